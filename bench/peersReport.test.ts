import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderPeers, type PeersData } from './peersReport.js';

const data: PeersData = {
  when: '2026-11-21T00:00:00Z',
  machine: '2 × test <cpu>',
  quick: true,
  mpps: { hitless: { runs: [9, 10], p50: 9.5 }, testpmd: { runs: [10, 11], p50: 10.5 }, ovs: { runs: [5, 6], p50: 5.5 } },
  gaps: {
    handoff: { label: 'Hitless handoff', gaps_ms: [0.5, 0.6], p50: 0.5, p99: 0.6, max: 0.6, lost: 0, n: 2 },
    ovs_restart: { label: 'OVS-DPDK restart', gaps_ms: [1500, 2500], p50: 1500, p99: 2500, max: 2500, lost: 9, n: 2 },
  },
  background_p99_ms: 4.2,
  goals: [{ text: 'hitless ≥ 0.9× testpmd: 0.9×', met: true }, { text: 'hitless ≥ 1.2× OVS-DPDK: 1.1×', met: false }],
};

test('peers report: one self-contained page with a bar per forwarder, a strip per scenario on a log axis, and the goals', () => {
  const html = renderPeers(data);
  assert.doesNotMatch(html, /<script|src=|href=/, 'no script, no external resource');
  assert.match(html, /9\.50 Mpps/);
  assert.match(html, /5\.50 Mpps/);
  assert.equal((html.match(/<circle /g) ?? []).length, 4, 'a dot per switch');
  // decades from 0.1 ms to 10 s cover both scenarios
  for (const d of ['0.1 ms', '1 ms', '1000 ms', '10000 ms']) assert.ok(html.includes(`>${d}<`), d);
  assert.match(html, /class="ok">met: hitless ≥ 0\.9× testpmd/);
  assert.match(html, /class="no">NOT met: hitless ≥ 1\.2× OVS-DPDK/);
  assert.match(html, /2 × test &#60;cpu&#62;/, 'text is escaped');
  assert.match(html, /<td>OVS-DPDK restart<\/td><td>2<\/td><td>1500<\/td><td>2500<\/td><td>2500<\/td><td>9<\/td>/);
});
