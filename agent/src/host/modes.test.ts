// The rules that decide between handoff and swap, and what each is predicted to cost.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { figures, type Measurement } from '../../../protocol/measure.js';
import type { HitlessDpManifest, OvsDpdkManifest } from '../../../protocol/files.js';
import { BENCH, judgeModes, type ModeFacts } from './modes.js';

const man = (release: string, over: Partial<HitlessDpManifest> = {}): HitlessDpManifest => ({
  release,
  kind: 'hitless-dp',
  core: 'a1b2c3d4e5f60718',
  dpdk: '22.11.11',
  fwd: { abi: 2, layout: 2 },
  modes: ['handoff', 'swap'],
  ...over,
});
const facts = (over: Partial<ModeFacts> = {}): ModeFacts => ({
  core: { release: '1.0.0', manifest: man('1.0.0') },
  target: { release: '1.1.0', manifest: man('1.1.0') },
  stage: { layout: 2, abi: 2 },
  fdbEntries: 1000,
  history: [],
  ...over,
});
const swapOf = (f: ModeFacts) => judgeModes(f).modes.find((m) => m.mode === 'swap')!;
let seq = 0;
const meas = (mode: 'handoff' | 'swap', us: number, t_ns = ++seq, anomalies: string[] = []): Measurement => {
  const parts = { vm: 'v1', mode, from: 'a', to: 'b', t_ns, window_us: us, phases_us: null, passive_gap_us: mode === 'handoff' ? us : null, rings: [], anomalies, dropped: 0, witness: null };
  return { ...parts, ...figures(parts, null) };
};

test('swap is recommended when core and DPDK match, and predicted from the benchmark until the host has its own figures', () => {
  const j = judgeModes(facts());
  assert.equal(j.recommended, 'swap');
  const swap = j.modes.find((m) => m.mode === 'swap')!;
  assert.equal(swap.predicted_break_us, BENCH.swapWindowUs);
  assert.equal(swap.approvals, 'per-host');
  assert.equal(j.modes.find((m) => m.mode === 'handoff')!.predicted_break_us, BENCH.handoffGapUs);
  // a layout change costs per FDB entry converted, and says so
  const change = swapOf(facts({ stage: { layout: 1, abi: 2 } }));
  assert.equal(change.predicted_break_us, BENCH.swapWindowUs + BENCH.swapPerEntryUs * 1000);
  assert.match(change.reason, /converting 1000 FDB entries from state layout 1 to 2/);
  // three or more of the host's own switches replace the benchmark's figure
  const own = judgeModes(facts({ history: [meas('handoff', 900), meas('handoff', 1100), meas('handoff', 1000), meas('swap', 3), meas('swap', 5), meas('swap', 4)] }));
  assert.equal(own.modes.find((m) => m.mode === 'handoff')!.predicted_break_us, 1000);
  assert.match(own.modes.find((m) => m.mode === 'handoff')!.basis, /median datapath gap of 3 handoffs on this host/);
  assert.equal(own.modes.find((m) => m.mode === 'swap')!.predicted_break_us, 4);
  // a swap measured on 3 VMs is one swap; swaps that converted the FDB do not predict plain ones
  const one = judgeModes(facts({ history: [meas('swap', 2, 7), meas('swap', 2, 7), meas('swap', 2, 7), meas('swap', 50, 8, ['FDB state layout 1 -> 2: 9 entries converted by the incoming stage']), meas('swap', 60, 9, ['FDB state layout 2 -> 1: 9 entries converted by the outgoing stage'])] }));
  assert.equal(one.modes.find((m) => m.mode === 'swap')!.predicted_break_us, BENCH.swapWindowUs);
  assert.match(one.modes.find((m) => m.mode === 'swap')!.basis, /bench\/run swap/);
});

test('swap is refused, with the reason, for every mismatch; handoff remains', () => {
  const cases: [Partial<ModeFacts>, RegExp][] = [
    [{ target: { release: '1.1.0', manifest: null, error: 'release.json: missing' } }, /1\.1\.0 has no usable manifest \(release\.json: missing\)/],
    [{ target: { release: '1.1.0', manifest: man('1.1.0', { modes: ['handoff'] }) } }, /does not offer swap/],
    [{ core: { release: '1.0.0', manifest: null } }, /running core's release 1\.0\.0 has no usable manifest/],
    [{ target: { release: '1.1.0', manifest: man('1.1.0', { core: 'ffffffffffffffff' }) } }, /changes the datapath core/],
    [{ target: { release: '1.1.0', manifest: man('1.1.0', { dpdk: '23.11.0' }) } }, /built with DPDK 23\.11\.0; the running core with 22\.11\.11/],
    [{ target: { release: '1.1.0', manifest: man('1.1.0', { fwd: { abi: 3, layout: 2 } }) } }, /stage speaks ABI 3; the running datapath speaks 2/],
    [{ stage: null }, /does not answer lib\/info/],
    [{ stageRefusal: 'lib/check: state layout 2 (l2 1.0.0) -> 9 (x 2.0.0): neither stage converts it (no-migration)' }, /the running datapath would not take 1\.1\.0's stage: .*neither stage converts it/],
  ];
  for (const [over, why] of cases) {
    const j = judgeModes(facts(over));
    const swap = j.modes.find((m) => m.mode === 'swap')!;
    assert.equal(swap.available, false, String(why));
    assert.match(swap.reason, why);
    assert.equal(j.recommended, 'handoff');
    assert.equal(j.modes.find((m) => m.mode === 'handoff')!.available, true);
  }
  // a release that offers swap only: handoff is not available
  const only = judgeModes(facts({ target: { release: '1.1.0', manifest: man('1.1.0', { modes: ['swap'] }) } }));
  assert.equal(only.modes.find((m) => m.mode === 'handoff')!.available, false);
});

const ovs = (release: string): OvsDpdkManifest => ({ release, kind: 'ovs-dpdk', ovs: '3.1.0', dpdk: '22.11.11', modes: ['handoff'] });

test('an OVS-DPDK host is upgraded by handoff only, and the plan says why swap is not offered', () => {
  const j = judgeModes(facts({ core: { release: '1.0.0', manifest: ovs('1.0.0') }, target: { release: '1.1.0', manifest: ovs('1.1.0') }, stage: null }));
  const [handoff, swap] = [j.modes.find((m) => m.mode === 'handoff')!, j.modes.find((m) => m.mode === 'swap')!];
  assert.equal(handoff.available, true);
  assert.match(handoff.reason, /1\.1\.0 generation \(ovs-dpdk\) starts beside the running one/);
  assert.equal(swap.available, false);
  assert.match(swap.reason, /an OVS-DPDK generation has no such stage: handoff only/);
  assert.equal(j.recommended, 'handoff');
  assert.deepEqual([handoff.predicted_break_us, handoff.basis], [BENCH.ovsHandoffGapUs, 'bench/run handoff --datapath ovs (receive gap p50)']);
});

test('a release of another datapath kind is refused by both modes, with the kinds named', () => {
  for (const [core, target] of [
    [man('1.0.0'), ovs('1.1.0')],
    [ovs('1.0.0'), man('1.1.0')],
  ] as const) {
    const j = judgeModes(facts({ core: { release: '1.0.0', manifest: core }, target: { release: '1.1.0', manifest: target } }));
    const handoff = j.modes.find((m) => m.mode === 'handoff')!;
    assert.equal(handoff.available, false);
    assert.match(handoff.reason, new RegExp(`the host runs ${core.kind} and 1\\.1\\.0 is ${target.kind}: a handoff between datapath kinds is not supported`));
    assert.equal(j.modes.find((m) => m.mode === 'swap')!.available, false);
  }
});
