import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TrafficSample } from '../../../protocol/console.js';
import { figures, type Measurement } from '../../../protocol/measure.js';
import { ChartBuffer, toPlotData } from './chartBuffer.js';

const s = (vm: string, t: number, rx = 1000, tx = 900): TrafficSample => ({ vm, t, rx_pps: rx, tx_pps: tx, dropped: 0 });

/** A measured switch; probe: what the lab probe saw towards the VM (none: no witness). */
function meas(vm: string, t_ns: number, probe: { lost: number; gap_ms: number } | null = null, within: boolean | null = true): Measurement {
  const witness = probe ? { source: 'lab probe', threshold_ms: 0.5, rx: { flows: 1, lost: probe.lost, delayed: 0, gap_ms: probe.gap_ms, offered_pps: 1000 }, tx: null, background: { seconds: 0, gaps: [] } } : null;
  const parts = { vm, mode: 'handoff' as const, from: 'A', to: 'B', t_ns, window_us: 400, phases_us: null, passive_gap_us: 650, rings: [], anomalies: [], dropped: probe?.lost ?? 0, witness };
  return { ...parts, ...figures(parts, null), within_budget: within };
}

test('samples go to their VM, in time order, and the VMs are listed', () => {
  const b = new ChartBuffer();
  b.addSamples('h1', [s('vm2', 1000, 5), s('vm1', 1000, 7), s('vm1', 2000, 8)]);
  assert.deepEqual(b.vms('h1'), ['vm1', 'vm2']);
  assert.deepEqual(b.view('h1', 'vm1'), { t: [1000, 2000], rx: [7, 8], tx: [900, 900], marks: [] });
  assert.deepEqual(b.view('h1', 'vm2').rx, [5]);
  assert.deepEqual(b.view('h2', 'vm1').t, [], 'hosts are kept apart');
  assert.deepEqual(b.vms('nope'), []);
});

test('the ring keeps only the last windowMs, relative to the newest sample', () => {
  const b = new ChartBuffer({ windowMs: 10_000 });
  for (let t = 0; t <= 20_000; t += 1000) b.addSamples('h1', [s('vm1', t)]);
  const v = b.view('h1', 'vm1');
  assert.equal(v.t[0], 10_000);
  assert.equal(v.t.at(-1), 20_000);
  assert.equal(v.t.length, 11);
});

test('the ring is also capped by count whatever the spacing', () => {
  const b = new ChartBuffer({ maxSamples: 5 });
  b.addSamples('h1', Array.from({ length: 12 }, (_, i) => s('vm1', i)));
  assert.deepEqual(b.view('h1', 'vm1').t, [7, 8, 9, 10, 11]);
});

test('a seed overlapping pushed samples merges: older samples slot in, repeated times are ignored', () => {
  const b = new ChartBuffer();
  b.addSamples('h1', [s('vm1', 5000, 50), s('vm1', 6000, 60)]);
  b.seed('h1', { samples: [s('vm1', 3000, 30), s('vm1', 4000, 40), s('vm1', 5000, 999)], marks: [] });
  const v = b.view('h1', 'vm1');
  assert.deepEqual(v.t, [3000, 4000, 5000, 6000]);
  assert.deepEqual(v.rx, [30, 40, 50, 60], 'the first sample at a time wins');
});

test('the version moves on every change, so charts redraw only when needed', () => {
  const b = new ChartBuffer();
  assert.equal(b.version('h1'), 0);
  b.addSamples('h1', [s('vm1', 1)]);
  const v1 = b.version('h1');
  assert.ok(v1 > 0);
  b.addSamples('h1', []);
  assert.equal(b.version('h1'), v1, 'nothing added, nothing to redraw');
  b.addMeasurement('h1', meas('vm1', 1e9), 2);
  assert.ok(b.version('h1') > v1);
  assert.equal(b.version('h2'), 0);
});

test('a pushed measurement is marked at its `at` with its gap; the same switch twice is one mark', () => {
  const b = new ChartBuffer();
  b.addMeasurement('h1', meas('vm1', 5e9), 100_000);
  b.addMeasurement('h1', meas('vm1', 5e9), 100_500);
  b.addMeasurement('h1', meas('vm2', 6e9, { lost: 3, gap_ms: 4.2 }, false), 101_000);
  const m1 = b.view('h1', 'vm1').marks;
  assert.equal(m1.length, 1);
  assert.equal(m1[0]!.t, 100_000);
  assert.equal(m1[0]!.breakMs, 0.65, 'no probe: the larger of keeper window and datapath gap');
  const m2 = b.view('h1', 'vm2').marks;
  assert.equal(m2[0]!.breakMs, 4.2, 'the probe gap when there is one');
  assert.equal(m2[0]!.withinBudget, false);
  assert.equal(m2[0]!.lost, 3);
});

test('seeded marks are drawn at once, at their `at`, whatever the host clock says', () => {
  const b = new ChartBuffer();
  // host monotonic clock around 1000 s; `at` is wall-clock ms
  b.seed('h1', { samples: [], marks: [{ at: 1_700_000_000_000, measurement: meas('vm1', 990e9) }, { at: 1_700_000_005_000, measurement: meas('vm2', 995e9) }] });
  assert.deepEqual(b.view('h1', 'vm1').marks.map((m) => m.t), [1_700_000_000_000]);
  assert.deepEqual(b.view('h1', 'vm2').marks.map((m) => m.t), [1_700_000_005_000]);
  // seeding the same history again adds nothing and does not bump the version
  const v = b.version('h1');
  b.seed('h1', { samples: [], marks: [{ at: 1_700_000_000_000, measurement: meas('vm1', 990e9) }] });
  assert.equal(b.view('h1', 'vm1').marks.length, 1);
  assert.equal(b.version('h1'), v);
  assert.equal(b.view('h2', 'vm1').marks.length, 0, 'hosts are kept apart');
});

test('marks of one VM stay in `at` order whichever way they came', () => {
  const b = new ChartBuffer();
  b.addMeasurement('h1', meas('vm1', 30e9), 30_000);
  b.seed('h1', { samples: [], marks: [{ at: 10_000, measurement: meas('vm1', 10e9) }, { at: 20_000, measurement: meas('vm1', 20e9) }] });
  assert.deepEqual(b.view('h1', 'vm1').marks.map((m) => m.t), [10_000, 20_000, 30_000]);
});

test('a seeded mark the console already pushed is not drawn twice', () => {
  const b = new ChartBuffer();
  b.addMeasurement('h1', meas('vm1', 7e9), 50_000);
  b.seed('h1', { samples: [], marks: [{ at: 50_000, measurement: meas('vm1', 7e9) }] });
  assert.equal(b.view('h1', 'vm1').marks.length, 1);
});

test('a mark without a usable time is ignored', () => {
  const b = new ChartBuffer();
  b.addMeasurement('h1', meas('vm1', 7e9), Number.NaN);
  assert.equal(b.view('h1', 'vm1').marks.length, 0);
});

test('marks leave with the window and are capped', () => {
  const b = new ChartBuffer({ windowMs: 10_000, maxMarks: 3 });
  b.addMeasurement('h1', meas('vm1', 1e9), 1_000);
  b.addSamples('h1', [s('vm1', 5_000), s('vm1', 12_000)]);
  assert.equal(b.view('h1', 'vm1').marks.length, 0, 'the mark at 1 s fell out of the window ending at 12 s');
  for (let i = 0; i < 5; i++) b.addMeasurement('h1', meas('vm1', (10 + i) * 1e9), 12_000 + i);
  assert.deepEqual(
    b.view('h1', 'vm1').marks.map((m) => m.t),
    [12_002, 12_003, 12_004],
  );
});

test('plot data aligns samples and marks on one x axis in seconds', () => {
  const b = new ChartBuffer();
  b.addSamples('h1', [s('vm1', 1000, 10, 11), s('vm1', 3000, 30, 31)]);
  b.addMeasurement('h1', meas('vm1', 1e9, { lost: 0, gap_ms: 0.5 }), 2000);
  b.addMeasurement('h1', meas('vm1', 2e9, { lost: 0, gap_ms: 0.7 }), 3000);
  const d = toPlotData(b.view('h1', 'vm1'), 10);
  assert.deepEqual(d.x, [1, 2, 3]);
  assert.deepEqual(d.rx, [10, null, 30]);
  assert.deepEqual(d.tx, [11, null, 31]);
  assert.deepEqual(d.gap, [null, 0.5, 0.7]);
  assert.deepEqual(d.budget, [10, 10, 10]);
  assert.deepEqual(toPlotData(b.view('h1', 'vm1'), null).budget, [null, null, null]);
  assert.deepEqual(toPlotData(b.view('h1', 'none'), 10), { x: [], rx: [], tx: [], gap: [], budget: [] });
});
