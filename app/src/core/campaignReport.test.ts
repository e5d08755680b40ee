// The report renderer alone: JSON, CSV and HTML of one campaign carry the same rows and the
// same headline, and the headline never disagrees with the rows (DESIGN.md §10).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Campaign } from '../../../protocol/console.js';
import { figures, type MeasuredParts, type Measurement, type Witness } from '../../../protocol/measure.js';
import { buildReport, renderCsv, renderHtml, renderJson } from './campaignReport.js';
import { csvCell } from './csv.js';

const budget = { max_gap_ms: 5, max_lost: 0 };
const witness = (lost: number, gap_ms: number | null, bg: number[] = []): Witness => ({
  source: 'lab probe', threshold_ms: 0.5, rx: { flows: 1, lost, delayed: 1, gap_ms, offered_pps: 10000 }, tx: null,
  background: { seconds: 30, gaps: bg.map((ms, i) => ({ flow: `to-vm-with-${lost}-lost`, start_ns: i, ms })) },
});
const m = (vm: string, over: Partial<MeasuredParts>): Measurement => {
  const parts: MeasuredParts = { vm, mode: 'handoff', from: '1.0.0-1', to: '1.1.0-2', t_ns: 1, window_us: 321.456, phases_us: null, passive_gap_us: 700, rings: [], anomalies: [], dropped: 0, witness: null, ...over };
  return { ...parts, ...figures(parts, budget) };
};

const campaign: Campaign = {
  id: 'c-1',
  plan: { spec: { hosts: ['h1', 'h2'], release: '1.1.0', canary: null, batch: 1, approval: 'each-vm', budget, mode: 'handoff', host_modes: {} }, waves: [{ index: 0, name: 'wave 1', hosts: [] }], blockers: [], notes: [] },
  state: 'failed',
  wave: 0,
  waves_paused: [],
  hosts: [
    {
      host: 'h1', wave: 0, state: 'failed', paused: false, from: '1.0.0', to: '1.1.0', mode: 'handoff', error: 'h1-v3: over budget',
      // its VMs lost 5 more frames over the upgrade than its two switches did
      loss: { source: 'lab probe', vms: 2, lost: 2087 + 5, seconds: 12.5, outcome: 'aborted' },
      keeper: null,
      vms: [
        { vm: 'h1-v1', state: 'moved', measurement: m('h1-v1', { witness: witness(0, null, [3.2]) }), decision: { decision: 'approve', reason: '=HYPERLINK("x")', by: 'ana', at: 't' } },
        // the issue-12 case: nothing dropped in the datapath, 2087 frames missing at the VM
        { vm: 'h1-v3', state: 'failed', measurement: m('h1-v3', { witness: witness(2087, 260, [4.1]) }), decision: null },
      ],
    },
    { host: 'h2', wave: 0, state: 'pending', paused: false, from: '1.0.0', to: '1.1.0', mode: 'handoff', error: null, loss: null, keeper: null, vms: [{ vm: 'h2-v1', state: 'moved', measurement: m('h2-v1', { dropped: 3 }), decision: null }, { vm: 'h2-v2', state: 'pending', measurement: null, decision: null }] },
  ],
  started: '2026-12-01T00:00:00Z',
  finished: null,
  error: null,
  rollbacks: [],
  decisions: [],
};

test('the headline is the rows\' own: lost is every row\'s lost, from the witness where there is one, plus what each host lost outside its rows', () => {
  const r = buildReport(campaign);
  assert.equal(r.summary.lost, 2087 + 3 + 5);
  assert.equal(r.summary.lost_outside, 5);
  assert.equal(r.summary.lost, r.vms.reduce((n, v) => n + (v.lost ?? 0), 0) + r.summary.hosts.reduce((n, h) => n + (h.lost_outside ?? 0), 0));
  assert.deepEqual(r.summary.hosts.map((h) => [h.host, h.lost, h.lost_outside]), [['h1', 2092, 5], ['h2', null, null]]);
  assert.equal(r.summary.lost_from_datapath, 1);
  assert.deepEqual(r.summary.break_ms, { n: 3, p50: 0.7, p99: 260, max: 260 });
  assert.equal(r.summary.over_budget, 2);
  assert.deepEqual(r.summary.background_gap_ms, { n: 2, p50: 3.2, p99: 4.1, max: 4.1 });
  const v3 = r.vms.find((v) => v.vm === 'h1-v3')!;
  assert.deepEqual([v3.lost, v3.lost_basis, v3.dropped, v3.break_ms, v3.within_budget, v3.delayed], [2087, 'witness', 0, 260, false, 1]);
});

test('JSON, CSV and HTML show the same rows and figures', () => {
  const json = JSON.parse(renderJson(campaign)) as ReturnType<typeof buildReport>;
  assert.deepEqual(json.summary, buildReport(campaign).summary);
  const [head, ...rows] = renderCsv(campaign).trim().split('\n').map((l) => [...l.matchAll(/"((?:[^"]|"")*)"/g)].map((x) => x[1]!.replace(/""/g, '"')));
  assert.equal(rows.length, json.vms.length);
  const col = (r: string[], k: string) => r[head!.indexOf(k)];
  for (const v of json.vms) {
    const r = rows.find((x) => col(x, 'vm') === v.vm)!;
    for (const k of ['lost', 'break_ms', 'dropped', 'window_us', 'within_budget'] as const) assert.equal(col(r, k), String(v[k] ?? ''), `${v.vm} ${k}`);
  }
  const html = renderHtml(campaign);
  assert.match(html, /frames lost 2095, 5 of them outside every switch window; 1 VM counted by the datapath alone/);
  assert.match(html, /<td>h1<\/td>(<td>[^<]*<\/td>){4}<td>h1-v3: over budget<\/td><td>2092<\/td><td>5<\/td>/);
  assert.match(html, /p50 0\.7 ms, p99 260 ms, max 260 ms/);
  assert.match(html, /Background receive gaps of the same run \(no switch near\): 2, p99 4\.1 ms, max 4\.1 ms/);
  for (const v of json.vms.filter((x) => x.lost !== null)) assert.match(html, new RegExp(`<td>${v.vm}</td>.*?<td>${v.lost}</td>`));
});

test('CSV: a cell a spreadsheet would run as a formula stays text', () => {
  assert.equal(csvCell('=HYPERLINK("x")'), `"'=HYPERLINK(""x"")"`);
  for (const s of ['+1', '-1+2', '@SUM(A1)', '\tx']) assert.ok(csvCell(s).startsWith(`"'`), s);
  assert.equal(csvCell(-3), '"-3"', 'a number is a number');
  assert.match(renderCsv(campaign), /"'=HYPERLINK\(""x""\)"/);
});
