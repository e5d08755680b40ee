// The campaign engine alone (no root, no processes): waves and the canary, stop-means-stop,
// pause and resume, abort and stop, over in-memory agents (testing/fakeAgent.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Approval, Campaign, CampaignSpec, Decision, Plan } from '../../../protocol/console.js';
import { FakeAgent, type VmScript } from '../../../testing/fakeAgent.js';
import { CampaignRun } from './campaignRun.js';

const spec = (over: Partial<CampaignSpec> = {}): CampaignSpec => ({ hosts: ['h1', 'h2'], release: '1.1.0', canary: 'h1', batch: 1, approval: 'each-vm', budget: { max_gap_ms: 5, max_lost: 0 }, mode: 'handoff', host_modes: {}, ...over });
const planOf = (s: CampaignSpec, vms: Record<string, string[]>): Plan => ({
  spec: s,
  waves: s.hosts.map((h, i) => ({ index: i, name: i === 0 && s.canary ? 'canary' : `wave ${i}`, hosts: [{ host: h, group: null, from: '1.0.0', core: '1.0.0', vms: vms[h]!, mode: 'handoff' as const, options: [], recommended: null, predicted_break_us: null, keeper: null }] })),
  blockers: [],
  notes: [],
});

const keeperStep = { from: '0.1.0', to: '0.2.0', predicted_pause_us: 22_760, basis: 'bench/run keeper-upgrade (control pause p50)' };

/** keepers: hosts whose host package installed keeper 0.2.0 beside the running 0.1.0 */
function bed(s: CampaignSpec, scripts: Record<string, Record<string, VmScript>> = {}, keepers: string[] = []) {
  const vms = { h1: ['h1-v1', 'h1-v2'], h2: ['h2-v1', 'h2-v2'] };
  const agents = new Map(Object.entries(vms).map(([h, v]) => [h, new FakeAgent(h, v, scripts[h] ?? {})]));
  const plan = planOf(s, vms);
  for (const h of keepers) {
    agents.get(h)!.keeper.installed = '0.2.0';
    plan.waves.flatMap((w) => w.hosts).find((x) => x.host === h)!.keeper = keeperStep;
  }
  // pending approvals, as the console keeps them until decided or cancelled; next() hands them out in order
  const pending = new Set<{ a: Approval; resolve: (d: Decision | null) => void }>();
  const fresh: { a: Approval; resolve: (d: Decision | null) => void }[] = [];
  const audit: string[] = [];
  let waiting: (() => void) | null = null;
  const run = new CampaignRun(plan, {
    conn: (h) => agents.get(h)!,
    // hosts without approvers files (signing is tested against the real agent: approvals.test.ts)
    sign: async () => null,
    ask: (a) =>
      new Promise((resolve) => {
        const x = { a, resolve: (d: Decision | null) => (pending.delete(x), resolve(d)) };
        pending.add(x);
        fresh.push(x);
        waiting?.();
      }),
    cancelAsks: (campaign, host) => {
      for (const x of [...pending]) if (x.a.campaign === campaign && (host === undefined || x.a.host === host)) x.resolve(null);
    },
    changed: () => undefined,
    audit: (action) => void audit.push(action),
  });
  /** the next approval asked */
  const next = async (): Promise<{ a: Approval; resolve: (d: Decision | null) => void }> => {
    while (fresh.length === 0) await new Promise<void>((r) => (waiting = r));
    return fresh.shift()!;
  };
  const decide = (d: 'approve' | 'deny', reason = 'ok'): Decision => ({ decision: d, reason, by: 'ana', at: '2026-12-01T00:00:00Z' });
  return { run, agents, next, decide, audit };
}

const states = (c: Campaign) => c.hosts.map((h) => [h.host, h.state]);

test('the canary goes first; the approver of the next wave sees what it measured; both hosts commit', async () => {
  const b = bed(spec());
  b.run.start();
  for (const vm of ['h1-v1', 'h1-v2']) {
    const x = await b.next();
    assert.equal(x.a.vm, vm);
    assert.equal(x.a.canary, null, 'the canary wave has no canary figures yet');
    x.resolve(b.decide('approve'));
  }
  const x = await b.next();
  assert.equal(x.a.vm, 'h2-v1');
  assert.deepEqual([x.a.canary?.host, x.a.canary?.vms, x.a.canary?.lost, x.a.canary?.max_gap_ms], ['h1', 2, 0, 0.5]);
  x.resolve(b.decide('approve'));
  (await b.next()).resolve(b.decide('approve'));
  await b.run.settled();
  assert.equal(b.run.c.state, 'done');
  assert.deepEqual(states(b.run.c), [['h1', 'committed'], ['h2', 'committed']]);
  assert.equal(b.run.c.decisions.length, 4);
  assert.ok(b.run.c.hosts.every((h) => h.vms.every((v) => v.state === 'moved' && v.measurement !== null)));
});

test('stop means stop: a host over budget fails and later waves do not start', async () => {
  const b = bed(spec({ approval: 'auto' }), { h1: { 'h1-v2': { breakMs: 8 } } });
  b.run.start();
  await b.run.settled();
  assert.equal(b.run.c.state, 'failed');
  assert.deepEqual(states(b.run.c), [['h1', 'failed'], ['h2', 'pending']]);
  assert.match(b.run.c.error!, /canary: h1: h1-v2: over budget: break 8 ms is over the 5 ms budget/);
  assert.equal(b.agents.get('h2')!.calls.length, 0, 'h2 was never touched');
  assert.ok(b.audit.includes('campaign/host-failed'));
});

test('pause holds before the next VM; resume goes on from there', async () => {
  const b = bed(spec({ hosts: ['h1'], canary: null }));
  b.run.start();
  (await b.next()).resolve(b.decide('approve'));
  const x = await b.next();
  b.run.pause({ level: 'campaign' });
  x.resolve(b.decide('approve'));
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(b.run.c.state, 'paused');
  assert.deepEqual(b.agents.get('h1')!.st.vms.map((v) => v.moved), [true, false], 'approved, but held by the pause');
  b.run.resume({ level: 'campaign' });
  await b.run.settled();
  assert.equal(b.run.c.state, 'done');
});

test('abort moves back every host not yet committed and cancels what was being asked', async () => {
  const b = bed(spec({ hosts: ['h1'], canary: null }));
  b.run.start();
  (await b.next()).resolve(b.decide('approve'));
  await b.next(); // h1-v2 waits for an answer that never comes
  await b.run.abort({ level: 'campaign' });
  assert.equal(b.run.c.state, 'aborted');
  assert.deepEqual(states(b.run.c), [['h1', 'aborted']]);
  assert.equal(b.agents.get('h1')!.st.last_outcome, 'aborted');
  assert.deepEqual(b.run.c.hosts[0]!.vms.map((v) => v.state), ['rolled-back', 'pending']);
});

test('stop (the operator quits) ends the run and leaves every host where it is; resume finishes it', async () => {
  const b = bed(spec({ hosts: ['h1'], canary: null }));
  b.run.start();
  (await b.next()).resolve(b.decide('approve'));
  await b.next();
  await b.run.stop('stopped from the command line');
  assert.equal(b.run.c.state, 'stopped');
  assert.equal(b.run.c.error, 'stopped from the command line');
  assert.equal(b.agents.get('h1')!.st.state, 'switching', 'the host keeps its state');
  b.run.resume({ level: 'campaign' });
  const x = await b.next();
  assert.equal(x.a.vm, 'h1-v2', 'the VM that moved is not asked again');
  x.resolve(b.decide('approve'));
  await b.run.settled();
  assert.equal(b.run.c.state, 'done');
});

test('a denied VM holds its host (not committed) and the campaign still finishes the wave', async () => {
  const b = bed(spec({ hosts: ['h1'], canary: null }));
  b.run.start();
  (await b.next()).resolve(b.decide('deny', 'tenant freeze'));
  (await b.next()).resolve(b.decide('approve'));
  await b.run.settled();
  assert.deepEqual(states(b.run.c), [['h1', 'held']]);
  assert.match(b.run.c.hosts[0]!.error!, /h1-v1 denied and still on 1\.0\.0/);
  assert.equal(b.run.c.hosts[0]!.vms[0]!.decision?.reason, 'tenant freeze');
});

test('an agent whose connection drops mid-host fails that host with the reason; the campaign stops after the wave', async () => {
  const b = bed(spec({ hosts: ['h1', 'h2'], canary: null, approval: 'auto' }));
  b.agents.get('h1')!.dropAt = 'upgrade/commit';
  b.run.start();
  await b.run.settled();
  assert.equal(b.run.c.state, 'failed');
  assert.match(b.run.c.hosts[0]!.error!, /connection to its agent dropped/);
  assert.equal(b.run.c.hosts[1]!.state, 'pending');
});

test("hosts whose keeper is due: each keeper is replaced first, asked once for its host with the expected pause; one denied stays as it is and its VMs move all the same", async () => {
  const b = bed(spec(), {}, ['h1', 'h2']);
  b.run.start();
  let x = await b.next();
  assert.deepEqual([x.a.kind, x.a.host, x.a.vm, x.a.keeper], ['keeper', 'h1', null, keeperStep]);
  assert.equal(b.agents.get('h1')!.calls.includes('upgrade/prepare'), false, 'nothing prepared before the keeper step');
  x.resolve(b.decide('approve', 'new keeper'));
  for (const vm of ['h1-v1', 'h1-v2']) {
    x = await b.next();
    assert.deepEqual([x.a.kind, x.a.vm], ['vm', vm]);
    x.resolve(b.decide('approve'));
  }
  x = await b.next();
  assert.deepEqual([x.a.kind, x.a.host], ['keeper', 'h2']);
  x.resolve(b.decide('deny', 'not on h2 today'));
  for (const vm of ['h2-v1', 'h2-v2']) {
    x = await b.next();
    assert.deepEqual([x.a.kind, x.a.vm], ['vm', vm]);
    x.resolve(b.decide('approve'));
  }
  await b.run.settled();
  const c = b.run.c;
  assert.deepEqual(states(c), [['h1', 'committed'], ['h2', 'committed']]);
  assert.deepEqual([c.hosts[0]!.keeper?.from_version, c.hosts[0]!.keeper?.version], ['0.1.0', '0.2.0']);
  assert.equal(c.hosts[1]!.keeper, null);
  assert.deepEqual([b.agents.get('h1')!.keeper.running, b.agents.get('h2')!.keeper.running], ['0.2.0', '0.1.0']);
  assert.deepEqual(c.decisions.filter((d) => d.kind === 'keeper').map((d) => [d.host, d.decision, d.reason]), [['h1', 'approve', 'new keeper'], ['h2', 'deny', 'not on h2 today']]);
  assert.equal(b.audit.filter((a) => a === 'campaign/keeper-upgraded').length, 1);
  const h1 = b.agents.get('h1')!.calls.filter((m) => m.startsWith('keeper/') || m === 'upgrade/prepare');
  assert.deepEqual(h1, ['keeper/versions', 'keeper/upgrade', 'upgrade/prepare'], 'the keeper replaced, then the host prepared');
});

test('a keeper that cannot take over fails its host before anything is prepared, saying why; the campaign stops there', async () => {
  const b = bed(spec({ approval: 'auto' }), {}, ['h1']);
  b.agents.get('h1')!.keeperRefuses = '/usr/lib/hitless/hitless-keeper did not take over: it exited before it was ready (exit status 1); this keeper keeps every session';
  b.run.start();
  await b.run.settled();
  const c = b.run.c;
  assert.deepEqual(states(c), [['h1', 'failed'], ['h2', 'pending']]);
  assert.match(c.hosts[0]!.error!, /the keeper was not upgraded: .*this keeper keeps every session/);
  assert.equal(b.agents.get('h1')!.calls.includes('upgrade/prepare'), false);
  assert.equal(c.state, 'failed');
});
