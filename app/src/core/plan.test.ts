import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CampaignSpec, HostRow } from '../common/api.js';
import { planCampaign } from './plan.js';

function row(name: string, over: Partial<HostRow> = {}): HostRow {
  return {
    name, source: 'manual', address: `root@${name}:22`, group: null, conn: 'connected', problem: null, pending_key: null, next_retry_ms: null,
    agent_version: '0.1.0', releases: ['1.0.0', '1.1.0'], active: { gen: '1.0.0-1', release: '1.0.0' }, target: null, state: 'idle', error: null,
    health: { ok: true, problems: [] }, vms: [{ vm: `${name}-vm1`, serving: '1.0.0-1', release: '1.0.0', connected: true, moved: false, last: null, rx_pps: null, tx_pps: null }],
    last_break_ms: null, campaign: null, ...over,
  };
}
const spec = (over: Partial<CampaignSpec> = {}): CampaignSpec => ({ hosts: ['a', 'b', 'c', 'd', 'e'], release: '1.1.0', canary: 'a', batch: 2, approval: 'each-vm', budget: { max_gap_ms: 10, max_lost: 0 }, ...over });

test('plan: canary alone first, then batches; two hosts of one rack never share a wave', () => {
  const rows = [row('a', { group: 'r1' }), row('b', { group: 'r1' }), row('c', { group: 'r1' }), row('d', { group: 'r2' }), row('e')];
  const p = planCampaign(spec(), rows);
  assert.deepEqual(p.blockers, []);
  assert.deepEqual(p.waves.map((w) => [w.name, w.hosts.map((h) => h.host)]), [['canary', ['a']], ['wave 1', ['b', 'd']], ['wave 2', ['c', 'e']]]);
  assert.deepEqual(p.waves[0]!.hosts[0], { host: 'a', group: 'r1', from: '1.0.0', vms: ['a-vm1'] });
  assert.match(p.notes[0]!, /5 VMs on 5 hosts move to 1\.1\.0 in 3 waves.*each VM waits for an operator approval.*10 ms break and 0 lost frames/);
});

test('plan: an unreachable host, a busy host or a missing release blocks the start, saying which and why', () => {
  const rows = [
    row('a'),
    row('b', { conn: 'unreachable', problem: 'connect ETIMEDOUT' }),
    row('c', { state: 'switching', target: { gen: '1.1.0-2', release: '1.1.0' } }),
    row('d', { releases: ['1.0.0'] }),
    row('e', { conn: 'hostkey-changed', problem: 'host key of e has CHANGED' }),
  ];
  const p = planCampaign(spec(), rows);
  assert.deepEqual(p.blockers, [
    'b is not connected (unreachable: connect ETIMEDOUT): reconnect it or leave it out of the campaign',
    'c is switching (to 1.1.0): finish or roll back that upgrade first',
    'd does not have release 1.1.0 installed (it has 1.0.0)',
    'e is not connected (hostkey-changed: host key of e has CHANGED): reconnect it or leave it out of the campaign',
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
