import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { UpgradePlan } from '../../../protocol/agent.js';
import type { CampaignSpec, HostRow } from '../../../protocol/console.js';
import { planCampaign } from './plan.js';

function row(name: string, over: Partial<HostRow> = {}): HostRow {
  return {
    name, source: 'manual', address: `root@${name}:22`, group: null, conn: 'connected', problem: null, pending_key: null, next_retry_ms: null,
    agent_version: '0.1.0', supervisor: null, releases: ['1.0.0', '1.1.0'], active: { gen: '1.0.0-1', release: '1.0.0' }, target: null, state: 'idle', mode: 'handoff', error: null,
    health: { ok: true, problems: [] }, standby: null, keeper: null, exposed: null, failovers: [], vms: [{ vm: `${name}-vm1`, serving: '1.0.0-1', release: '1.0.0', connected: true, moved: false, last: null, rx_pps: null, tx_pps: null }],
    last_break_ms: null, campaign: null, ...over,
  };
}
const spec = (over: Partial<CampaignSpec> = {}): CampaignSpec => ({ hosts: ['a', 'b', 'c', 'd', 'e'], release: '1.1.0', canary: 'a', batch: 2, approval: 'each-vm', budget: { max_gap_ms: 10, max_lost: 0 }, mode: 'handoff', host_modes: {}, ...over });

test('plan: canary alone first, then batches; two hosts of one rack never share a wave', () => {
  const rows = [row('a', { group: 'r1' }), row('b', { group: 'r1' }), row('c', { group: 'r1' }), row('d', { group: 'r2' }), row('e')];
  const p = planCampaign(spec(), rows);
  assert.deepEqual(p.blockers, []);
  assert.deepEqual(p.waves.map((w) => [w.name, w.hosts.map((h) => h.host)]), [['canary', ['a']], ['wave 1', ['b', 'd']], ['wave 2', ['c', 'e']]]);
  assert.deepEqual(p.waves[0]!.hosts[0], { host: 'a', group: 'r1', from: '1.0.0', core: '1.0.0', vms: ['a-vm1'], mode: 'handoff', options: [], recommended: null, predicted_break_us: null, keeper: null });
  assert.match(p.notes[0]!, /5 VMs on 5 hosts move to 1\.1\.0 in 3 waves.*each VM waits for an operator approval.*10 ms break and 0 lost frames/);
});

test('plan: an unreachable host, a busy host or a missing release blocks the start, saying which and why', () => {
  const rows = [
    row('a'),
    row('b', { conn: 'unreachable', problem: 'connect ETIMEDOUT' }),
    row('c', { state: 'switching', target: { gen: '1.1.0-2', release: '1.1.0' } }),
    row('d', { releases: ['1.0.0'] }),
    row('e', { conn: 'hostkey-changed', problem: 'host key of e has CHANGED' }),
    row('f', { exposed: { gen: '1.0.0-1', since: '2026-12-04T12:00:00.000Z', why: 'generation 1.0.0-1 died (heartbeat stopped and every thread is exiting)' } }),
  ];
  const p = planCampaign(spec({ hosts: ['a', 'b', 'c', 'd', 'e', 'f'] }), rows);
  assert.deepEqual(p.blockers, [
    'b is not connected (unreachable: connect ETIMEDOUT): reconnect it or leave it out of the campaign',
    'c is switching (to 1.1.0): finish or roll back that upgrade first',
    'd does not have release 1.1.0 installed (it has 1.0.0)',
    'e is not connected (hostkey-changed: host key of e has CHANGED): reconnect it or leave it out of the campaign',
    'f is exposed (generation 1.0.0-1 died (heartbeat stopped and every thread is exiting)) and has no standby yet: an upgrade waits until its agent has restored one',
  ]);
});

test('plan: hosts already on the release are noted, not moved; a canary outside the campaign is refused', () => {
  const rows = [row('a'), row('b', { active: { gen: '1.1.0-3', release: '1.1.0' } })];
  const p = planCampaign(spec({ hosts: ['a', 'b'], canary: null, batch: 5 }), rows);
  assert.deepEqual(p.waves.map((w) => w.hosts.map((h) => h.host)), [['a']]);
  assert.ok(p.notes.includes('b already runs 1.1.0: nothing to move there'));
  assert.deepEqual(planCampaign(spec({ hosts: ['a'], canary: 'b' }), rows).blockers, ['canary b is not one of the campaign\'s hosts']);
  assert.deepEqual(planCampaign(spec({ hosts: ['b'], canary: null }), rows).blockers, ['no host needs to move to 1.1.0']);
});

/** What an agent's upgrade/plan would say: swap possible or not (with why). */
function agentPlan(host: string, swapOk: boolean): UpgradePlan {
  return {
    host, release: '1.1.0', active: { gen: '1.0.0-1', release: '1.0.0' }, recommended: swapOk ? 'swap' : 'handoff',
    modes: [
      { mode: 'handoff', available: true, reason: 'a new generation', predicted_break_us: 580, basis: 'bench', approvals: 'per-vm' },
      { mode: 'swap', available: swapOk, reason: swapOk ? 'same core' : 'release 1.1.0 changes the datapath core', predicted_break_us: 1, basis: 'bench', approvals: 'per-host' },
    ],
  };
}

test('plan: each host moves by the mode chosen for it; auto takes the agent\'s recommendation; an impossible swap blocks with the agent\'s reason', () => {
  const rows = [row('a'), row('b'), row('c')];
  const opts = new Map([['a', agentPlan('a', true)], ['b', agentPlan('b', false)], ['c', agentPlan('c', true)]]);
  const modeOf = (p: ReturnType<typeof planCampaign>) => Object.fromEntries(p.waves.flatMap((w) => w.hosts.map((h) => [h.host, [h.mode, h.predicted_break_us]])));
  let p = planCampaign(spec({ hosts: ['a', 'b', 'c'], mode: 'auto' }), rows, opts);
  assert.deepEqual(p.blockers, []);
  assert.deepEqual(modeOf(p), { a: ['swap', 1], b: ['handoff', 580], c: ['swap', 1] });
  assert.match(p.notes[0]!, /1 host by handoff \(one VM at a time\), 2 by an in-place stage swap/);
  // a per-host exception wins over the campaign's mode
  p = planCampaign(spec({ hosts: ['a', 'b', 'c'], mode: 'auto', host_modes: { c: 'handoff' } }), rows, opts);
  assert.deepEqual(modeOf(p).c, ['handoff', 580]);
  // swap asked where the agent says it cannot be used
  p = planCampaign(spec({ hosts: ['a', 'b'], mode: 'swap' }), rows, opts);
  assert.deepEqual(p.blockers, ['b: swap is not possible: release 1.1.0 changes the datapath core']);
  // no word from the agent: only handoff can be planned
  p = planCampaign(spec({ hosts: ['a'], canary: null, mode: 'auto' }), rows, new Map());
  assert.match(p.blockers[0]!, /a: its agent did not say which upgrade modes it can use/);
  assert.deepEqual(planCampaign(spec({ hosts: ['a'], canary: null, host_modes: { zz: 'swap' } }), rows, opts).blockers, ["host_modes: zz is not one of the campaign's hosts"]);
});

test("plan: a host whose host package installed a new keeper has a keeper step first, with its expected pause; one whose keeper is current has none", () => {
  const due = { running: { pid: 7, version: '0.1.0', state_format: 1, sessions: 1 }, installed: '0.2.0', due: true, predicted_pause_us: 22_760, basis: 'bench/run keeper-upgrade (control pause p50)' };
  const rows = [row('a', { keeper: due }), row('b', { keeper: { ...due, installed: '0.1.0', due: false } }), row('c')];
  const p = planCampaign(spec({ hosts: ['a', 'b', 'c'], canary: 'a' }), rows);
  assert.deepEqual(p.waves.flatMap((w) => w.hosts).map((h) => [h.host, h.keeper]), [['a', { from: '0.1.0', to: '0.2.0', predicted_pause_us: 22_760, basis: 'bench/run keeper-upgrade (control pause p50)' }], ['b', null], ['c', null]]);
  assert.ok(p.notes.some((n) => /^first on a: the keeper is replaced by the one its host package installed \(a 0\.1\.0 -> 0\.2\.0, control pause ~23 ms; bench\/run keeper-upgrade .*\): the VMs keep forwarding, asked once per host$/.test(n)), p.notes.join('\n'));
});
