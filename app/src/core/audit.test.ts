import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { AuditLog } from './audit.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function fresh(): AuditLog {
  const dir = mkdtempSync(join(tmpdir(), 'hl-audit-'));
  dirs.push(dir);
  return new AuditLog(join(dir, 'audit.jsonl'));
}

test('audit: entries chain, survive a restart, and export as JSON and CSV', () => {
  const a = fresh();
  a.append('ana', 'campaign/start', { campaign: 'c-1' });
  a.append('ana', 'approval/approve', { vm: 'vm1', reason: 'canary clean' });
  const b = new AuditLog(a.path);
  assert.deepEqual(b.verify(), { ok: true, entries: 2, broken_at: null, reason: null });
  const e = b.append('bo', 'approval/deny', { vm: 'vm2', reason: 'tenant freeze, "quoted"' });
  assert.equal(e.seq, 3);
  assert.equal(e.prev, b.list(10)[1]!.hash);
  assert.equal(JSON.parse(b.exportJson()).length, 3);
  const csv = b.exportCsv().trim().split('\n');
  assert.equal(csv.length, 4);
  assert.match(csv[3]!, /"approval\/deny"/);
  assert.match(csv[3]!, /""reason"":""tenant freeze, /); // the detail JSON, its quotes doubled
  // an operator name a spreadsheet would run as a formula stays text
  b.append('=HYPERLINK("http://x","y")', 'approval/approve', { vm: 'vm1' });
  assert.match(b.exportCsv().trim().split('\n')[4]!, /^"4","[^"]+","'=HYPERLINK\(""http/);
});

test('audit: an edited, removed or reordered line breaks the chain at that line', () => {
  const a = fresh();
  for (let i = 1; i <= 4; i++) a.append('ana', 'approval/approve', { vm: `vm${i}`, reason: 'ok' });
  const lines = readFileSync(a.path, 'utf8').trim().split('\n');

  writeFileSync(a.path, lines.map((l, i) => (i === 2 ? l.replace('"vm3"', '"vm9"') : l)).join('\n') + '\n');
  assert.deepEqual(new AuditLog(a.path).verify(), { ok: false, entries: 4, broken_at: 3, reason: "entry 3's content does not match its hash: it was edited" });

  writeFileSync(a.path, [lines[0], lines[2], lines[3]].join('\n') + '\n');
  const v = new AuditLog(a.path).verify();
  assert.equal(v.ok, false);
  assert.equal(v.broken_at, 2);
  assert.match(v.reason!, /removed or reordered/);

  writeFileSync(a.path, [lines[0], lines[1], 'not json', lines[3]].join('\n') + '\n');
  assert.equal(new AuditLog(a.path).verify().broken_at, 3);
});
