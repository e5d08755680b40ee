// The one definition of each figure (DESIGN.md §10): what an operator reads on every screen,
// export, CLI line and benchmark comes from these functions, so they are tested here alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { attribute, figures, headline, histogram, judge, lostOutside, Measurement, percentiles, round, type Direction, type MeasuredParts, type UpgradeLoss, type Witness } from './measure.js';
import { gapsOf, type ProbeEvent } from './native/probe.js';

const gap = (src: string, rx: string, start: number, us: number): ProbeEvent => ({
  event: 'gap',
  data: { flow: `${src}:${rx}`, src, rx_vm: rx, start_ns: start, end_ns: start + us * 1000, gap_us: us, lost_in_gap: 0 },
});

const dir = (over: Partial<Direction> = {}): Direction => ({ flows: 1, lost: 0, delayed: 0, gap_ms: null, offered_pps: 10000, ...over });
const witness = (rx: Direction | null, tx: Direction | null = null): Witness => ({ source: 'lab probe', threshold_ms: 0.5, rx, tx, background: { seconds: 30, gaps: [] } });
const parts = (over: Partial<MeasuredParts> = {}): MeasuredParts => ({
  vm: 'v1', mode: 'handoff', from: 'A', to: 'B', t_ns: 1, window_us: 300, phases_us: null, passive_gap_us: 800, rings: [], anomalies: [], dropped: 0, witness: null, ...over,
});
const row = (over: Partial<MeasuredParts>, budget = { max_gap_ms: 5, max_lost: 0 }): Measurement => ({ ...parts(over), ...figures(parts(over), budget) });

test('percentiles: nearest rank, never an invented value; an empty sample has none (null, not 0 or NaN)', () => {
  assert.deepEqual(percentiles([]), { n: 0, p50: null, p99: null, max: null });
  assert.deepEqual(percentiles([7]), { n: 1, p50: 7, p99: 7, max: 7 });
  const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 1..100, unsorted
  assert.deepEqual(percentiles(xs), { n: 100, p50: 50, p99: 99, max: 100 });
  assert.deepEqual(percentiles([3, 1, 2]), { n: 3, p50: 2, p99: 3, max: 3 });
  // one rounding rule: 3 decimals unless told; null stays null
  assert.equal(round(0.12345), 0.123);
  assert.equal(round(2.675, 2), 2.68);
  assert.equal(round(null), null);
});

test('histogram: nice bin widths covering the budget, every value counted once, the maximum in the last bin', () => {
  const bins = histogram([0.3, 0.35, 1.2, 4.9], 10);
  assert.equal(bins[0]!.lo, 0);
  assert.ok(bins.at(-1)!.hi >= 10);
  assert.equal(bins.reduce((n, b) => n + b.count, 0), 4);
  assert.equal(bins[0]!.hi - bins[0]!.lo, 0.5);
  assert.equal(bins[0]!.count, 2);
  assert.ok(bins.length <= 20);
  assert.deepEqual(histogram([], 10), []);
  const top = histogram([2, 4], null, 4);
  assert.equal(top.reduce((n, b) => n + b.count, 0), 2);
  assert.equal(top.at(-1)!.count, 1);
});

test('lost: the witness count (both directions) where there is a witness, else the datapath drops, and the row says which', () => {
  const seen = figures(parts({ dropped: 2, witness: witness(dir({ lost: 30, delayed: 4 }), dir({ lost: 5 })) }), null);
  assert.equal(seen.lost, 35, 'frames lost towards and from the VM; the datapath drops are among them, not added');
  assert.equal(seen.lost_basis, 'witness');
  const blind = figures(parts({ dropped: 2 }), null);
  assert.deepEqual([blind.lost, blind.lost_basis], [2, 'datapath']);
  // delayed frames are not lost
  assert.equal(figures(parts({ witness: witness(dir({ lost: 0, delayed: 17 })) }), null).lost, 0);
});

test('break: the witness gap when it saw one over its threshold, else the larger of the keeper window and the datapath gap; frame-loss method beside it', () => {
  const w = figures(parts({ witness: witness(dir({ gap_ms: 2.5, lost: 20, offered_pps: 10000 }), dir({ gap_ms: 4 })) }), null);
  assert.deepEqual([w.break_ms, w.break_basis], [4, 'witness']);
  assert.equal(w.break_loss_ms, 2, '20 frames at 10 000 frames/s: 2 ms');
  const quiet = figures(parts({ window_us: 300, passive_gap_us: 800, witness: witness(dir()) }), null);
  assert.deepEqual([quiet.break_ms, quiet.break_basis, quiet.break_loss_ms], [0.8, 'datapath', 0]);
  const swap = figures(parts({ mode: 'swap', window_us: 0.2, passive_gap_us: null }), null);
  assert.deepEqual([swap.break_ms, swap.break_basis, swap.break_loss_ms], [0.0002, 'window', null]);
});

test('within budget is judged once, against both the break and the lost frames; the words explain the verdict', () => {
  const b = { max_gap_ms: 5, max_lost: 0 };
  assert.equal(row({}).within_budget, true);
  assert.equal(figures(parts(), null).within_budget, null, 'no budget given: no verdict');
  const slow = row({ witness: witness(dir({ gap_ms: 7.25 })) });
  assert.equal(slow.within_budget, false);
  assert.equal(judge(slow, b), 'break 7.25 ms is over the 5 ms budget');
  const lossy = row({ witness: witness(dir({ lost: 3 })) });
  assert.equal(lossy.within_budget, false);
  assert.equal(judge(lossy, b), '3 frames lost, over the budget of 0');
  assert.equal(judge(row({ dropped: 1 }), { max_gap_ms: 5, max_lost: 1 }), null);
});

test('the headline is computed from the rows alone: its lost is their sum, even where a row saw loss only at the witness', () => {
  // the case of issue 12: the datapath dropped nothing, the probe saw 2087 frames missing
  const rows = [row({ vm: 'h1-v1' }), row({ vm: 'h1-v3', dropped: 0, witness: witness(dir({ lost: 2087, gap_ms: 260 })) }), row({ vm: 'h2-v1', dropped: 4 })];
  const h = headline(rows);
  assert.equal(h.lost, 2087 + 4);
  assert.equal(h.lost, rows.reduce((n, r) => n + r.lost, 0));
  assert.equal(h.lost_from_datapath, 2);
  assert.equal(h.over_budget, 2);
  assert.deepEqual(h.break_ms, { n: 3, p50: 0.8, p99: 260, max: 260 });
  assert.deepEqual(headline([]).break_ms, { n: 0, p50: null, p99: null, max: null });
});

test('what a host lost outside its switches is in the headline: lost is the rows\' sum plus each host\'s span less its rows', () => {
  const span = (lost: number): UpgradeLoss => ({ source: 'lab probe', vms: 2, lost, seconds: 9, outcome: 'committed' });
  const h1 = [row({ vm: 'h1-v1', witness: witness(dir({ lost: 2 })) }), row({ vm: 'h1-v2', witness: witness(dir()) })];
  const h2 = [row({ vm: 'h2-v1', witness: witness(dir({ lost: 1 })) })];
  // h1's VMs lost 7 over its upgrade, its switches 2: 5 lost between them; h2 was not counted
  const outside = [lostOutside(span(7), h1), lostOutside(null, h2)];
  assert.deepEqual(outside, [5, null]);
  const h = headline([...h1, ...h2], outside);
  assert.equal(h.lost, 2 + 1 + 5);
  assert.equal(h.lost_outside, 5);
  // a span settled later than a row (a late frame landed) never makes the rows' loss negative
  assert.equal(lostOutside(span(1), h1), 0);
  assert.equal(headline(h1).lost_outside, 0);
});

test('background gaps: each gap counted once over every row that saw it', () => {
  const bg = (gaps: { flow: string; start_ns: number; ms: number }[]): Witness => ({ ...witness(dir()), background: { seconds: 30, gaps } });
  const g1 = { flow: 'a:b', start_ns: 5, ms: 3 };
  const rows = [row({ witness: bg([g1, { flow: 'a:b', start_ns: 9, ms: 6 }]) }), row({ vm: 'v2', witness: bg([g1]) })];
  assert.deepEqual(headline(rows).background_gap_ms, { n: 2, p50: 3, p99: 6, max: 6 });
});

test('gaps are charged to the switch of their VM, the rest is background', () => {
  const gaps = gapsOf([gap('v1', 'v2', 10e6, 800), gap('v3', 'v4', 50e6, 3000), gap('v2', 'v1', 100e6, 1200), { event: 'start', data: { t_ns: 0 } }]);
  assert.equal(gaps.length, 3);
  const a = attribute(gaps, [{ vm: 'v1', start_ns: 10.2e6, end_ns: 10.5e6 }, { vm: 'v2', start_ns: 200e6, end_ns: 200.3e6 }], 500);
  assert.deepEqual(a.event_gap_ms, [0.8, 0.5]);
  assert.equal(a.below_threshold, 1);
  assert.deepEqual(a.background_gap_ms.sort(), [1.2, 3]);
});

test('a measurement journaled by the previous agent (one probe direction, no figures) reads with the same figures', () => {
  const old = { vm: 'v1', mode: 'handoff', from: 'A', to: 'B', t_ns: 1, window_us: 300, passive_gap_us: 500, rings: [], anomalies: [], dropped: 1, probe: { lost: 12, gap_ms: 3.5 }, within_budget: false };
  const m = Measurement.parse(old);
  assert.deepEqual([m.lost, m.lost_basis, m.break_ms, m.break_basis, m.within_budget], [12, 'witness', 3.5, 'witness', false]);
  assert.equal(m.witness?.rx?.lost, 12);
  const noProbe = Measurement.parse({ ...old, probe: null, within_budget: null });
  assert.deepEqual([noProbe.lost, noProbe.lost_basis, noProbe.break_ms], [1, 'datapath', 0.5]);
});
