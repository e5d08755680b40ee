// Two agents of one host (two operators, or the console and a CLI): their operations never
// interleave, and each sees what the other journaled.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { HostLock } from './hostLock.js';
import { Journal } from './journal.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dir = mkdtempSync(join(tmpdir(), 'hl-lock-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('host lock: a second holder waits for the first; another host root is not held up', async () => {
  const root = join(dir, 'h1');
  const order: string[] = [];
  let release!: () => void;
  const first = new HostLock(root).hold(async () => {
    order.push('first in');
    await new Promise<void>((r) => (release = r));
    order.push('first out');
  });
  await sleep(50);
  const second = new HostLock(root).hold(async () => void order.push('second'));
  await new HostLock(join(dir, 'h2')).hold(async () => void order.push('other host'));
  await sleep(200);
  assert.deepEqual(order, ['first in', 'other host'], 'the second waits while the first holds the host');
  release();
  await Promise.all([first, second]);
  assert.deepEqual(order, ['first in', 'other host', 'first out', 'second']);
});

test('host lock: an agent killed while holding it (kill -9) leaves nothing stale behind', async () => {
  const root = join(dir, 'h3');
  const script = `import('${join(import.meta.dirname, 'hostLock.ts')}').then(({ HostLock }) => new HostLock(${JSON.stringify(root)}).hold(() => { console.log('held'); setInterval(() => {}, 1000); return new Promise(() => {}); }))`;
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((r) => child.stdout.once('data', () => r()));
  let got = false;
  const waiting = new HostLock(root).hold(async () => void (got = true));
  await sleep(200);
  assert.equal(got, false, 'held by the other process');
  child.kill('SIGKILL');
  await waiting;
  assert.equal(got, true);
});

test('journal: two agents of one host each see the other\'s entries and number theirs after them', () => {
  const path = join(dir, 'journal.jsonl');
  const a = new Journal(path);
  const b = new Journal(path);
  a.append({ type: 'start', gen: '1.0.0-1', release: '1.0.0' });
  assert.deepEqual(b.entries().map((e) => [e.seq, e.type]), [[1, 'start']]);
  b.append({ type: 'prepare', gen: '1.1.0-2', release: '1.1.0', approve: 'each' });
  a.append({ type: 'prepared' });
  assert.deepEqual(a.entries().map((e) => [e.seq, e.type]), [[1, 'start'], [2, 'prepare'], [3, 'prepared']]);
  assert.deepEqual(Journal.read(path).map((e) => e.seq), [1, 2, 3]);
  a.close();
  b.close();
});
