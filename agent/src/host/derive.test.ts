// Replaying the journal: what a restarted agent believes is under way, including a step that a
// rollback or commit was in the middle of.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { derive } from './derive.js';
import { Entry, type NewEntry, type Stamped } from './journal.js';

const stamp = (es: NewEntry[]): Stamped[] => es.map((e, i) => ({ ...Entry.parse(e), seq: i + 1, t: '2026-11-21T00:00:00Z' }));
const swapPrepared: NewEntry[] = [
  { type: 'start', gen: 'g1', release: '1.0.0' },
  { type: 'prepare', gen: 'g1', release: '1.1.0', approve: 'each', mode: 'swap' },
  { type: 'prepared' },
  { type: 'swap', to: 'target' },
  { type: 'swapped', to: 'target', measurements: null },
];

test('a swap made and committed: the generation runs the new release on the old core', () => {
  const d = derive(stamp([...swapPrepared, { type: 'commit' }, { type: 'committed' }]));
  assert.deepEqual([d.state, d.mode, d.active, d.core, d.pending], ['idle', 'swap', { gen: 'g1', release: '1.1.0' }, '1.0.0', null]);
  // a handoff later moves the core too
  const h = derive(stamp([...swapPrepared, { type: 'commit' }, { type: 'committed' }, { type: 'prepare', gen: 'g2', release: '1.2.0', approve: 'each', mode: 'handoff' }, { type: 'prepared' }, { type: 'commit' }, { type: 'committed' }]));
  assert.equal(h.core, '1.2.0');
});

test('a rollback interrupted inside its own swap back: the swap is settled first, then the rollback is still under way', () => {
  let d = derive(stamp([...swapPrepared, { type: 'abort', outcome: 'rolled-back' }, { type: 'swap', to: 'active' }]));
  assert.equal(d.pending?.type, 'swap');
  d = derive(stamp([...swapPrepared, { type: 'abort', outcome: 'rolled-back' }, { type: 'swap', to: 'active' }, { type: 'swapped', to: 'active', measurements: null }]));
  assert.equal(d.state, 'rolling-back');
  assert.equal(d.pending?.type, 'abort', 'the rollback itself is not finished');
  assert.equal(d.swapped, false);
  // the same for a handoff rollback interrupted after one VM went back
  const h = derive(stamp([
    { type: 'start', gen: 'g1', release: '1.0.0' },
    { type: 'prepare', gen: 'g2', release: '1.1.0', approve: 'each', mode: 'handoff' },
    { type: 'prepared' },
    { type: 'switch', vm: 'v1', to: 'g2' },
    { type: 'switched', vm: 'v1', to: 'g2', measurement: null },
    { type: 'abort', outcome: 'aborted' },
    { type: 'switch', vm: 'v1', to: 'g1' },
    { type: 'switched', vm: 'v1', to: 'g1', measurement: null },
  ]));
  assert.equal(h.pending?.type, 'abort');
  assert.equal(h.moved.size, 0);
  // an ordinary switch has no outer step
  const s = derive(stamp([...swapPrepared.slice(0, 3), { type: 'swap', to: 'target' }, { type: 'swap-failed', to: 'target', error: 'loop-busy' }]));
  assert.deepEqual([s.pending, s.error, s.state], [null, 'stage swap: loop-busy', 'switching']);
});

test("VMs found in an OVS DB are the host's until gone, and finding one mid-switch leaves the switch under way", () => {
  const d = derive(stamp([
    { type: 'start', gen: 'g1', release: '1.0.0' },
    { type: 'vm-found', vm: 'vhu1', mac: '02:00:00:00:00:01', frontend_socket: '/var/lib/vhost/vhu1', gen: 'g1' },
    { type: 'vm-found', vm: 'vhu2', mac: '02:00:00:00:00:02', frontend_socket: '/var/lib/vhost/vhu2', gen: 'g1' },
    { type: 'prepare', gen: 'g2', release: '1.1.0', approve: 'each', mode: 'handoff' },
    { type: 'prepared' },
    { type: 'switch', vm: 'vhu1', to: 'g2' },
    { type: 'vm-gone', vm: 'vhu2', why: "its port left g1's OVS DB" },
  ]));
  assert.deepEqual([...d.found.values()], [{ name: 'vhu1', mac: '02:00:00:00:00:01', frontend_socket: '/var/lib/vhost/vhu1' }]);
  assert.deepEqual([d.state, d.pending?.type], ['switching', 'switch']);
});

test("an upgrade's loss is the last finished upgrade's until the next prepare, and leaves the state alone", () => {
  const loss = { source: 'lab probe', vms: 2, lost: 3, seconds: 4.5, outcome: 'committed' as const };
  const done: NewEntry[] = [...swapPrepared, { type: 'commit' }, { type: 'committed' }, { type: 'loss', loss }];
  const d = derive(stamp(done));
  assert.deepEqual([d.state, d.pending, d.loss], ['idle', null, loss]);
  // a new upgrade has not lost anything counted yet
  assert.equal(derive(stamp([...done, { type: 'prepare', gen: 'g2', release: '1.2.0', approve: 'each', mode: 'handoff' }])).loss, null);
});
