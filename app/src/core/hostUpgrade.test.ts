// The host-upgrade driver alone (no root, no processes): every path an operator relies on, against
// an in-memory agent (testing/fakeAgent.ts) that judges each switch as the real one does.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Decision } from '../../../protocol/console.js';
import { FakeAgent } from '../../../testing/fakeAgent.js';
import { upgradeHost, type DriverHooks, type HostUpgradePlan, type VmStep } from './hostUpgrade.js';

const budget = { max_gap_ms: 5, max_lost: 0 };
const plan = (over: Partial<HostUpgradePlan> = {}): HostUpgradePlan => ({ release: '1.1.0', mode: 'handoff', approval: 'each', budget, denied: [], keeper: null, signing: null, ...over });
const yes: Decision = { decision: 'approve', reason: 'ok', by: 'ana', at: '2026-12-01T00:00:00Z' };
const no: Decision = { ...yes, decision: 'deny', reason: 'freeze' };

function hooks(answers: (vms: string[]) => Decision | null = () => yes, signal = new AbortController().signal) {
  const steps: [string, VmStep][] = [];
  const asked: string[][] = [];
  const h: DriverHooks = {
    signal,
    gate: async () => undefined,
    ask: async (vms) => (asked.push(vms), answers(vms)),
    preparing: () => undefined,
    switching: () => undefined,
    vm: (vm, step) => void steps.push([vm, step]),
  };
  return { h, steps, asked };
}

test('each VM moves only on its approval, then the host is committed', async () => {
  const a = new FakeAgent('h1', ['v1', 'v2']);
  const { h, asked, steps } = hooks();
  const r = await upgradeHost(a, plan(), h);
  assert.deepEqual(r, { outcome: 'committed', release: '1.1.0', loss: null });
  assert.deepEqual(asked, [['v1'], ['v2']]);
  assert.deepEqual(a.calls.filter((c) => c.startsWith('upgrade/') && c !== 'upgrade/status'), ['upgrade/prepare', 'upgrade/switch', 'upgrade/switch', 'upgrade/commit']);
  assert.deepEqual(steps.filter(([, s]) => s === 'moved').map(([vm]) => vm), ['v1', 'v2']);
});

test('a VM the host finds during the upgrade (plugged into its OVS DB) is asked for and moved too before the commit', async () => {
  const a = new FakeAgent('h1', ['v1', 'v2']);
  const { h, asked, steps } = hooks((vms) => {
    if (vms[0] === 'v1') a.st.vms.push({ vm: 'vhu9', serving: '1.0.0-1', connected: true, moved: false, measurement: null });
    return yes;
  });
  const r = await upgradeHost(a, plan(), h);
  assert.deepEqual(r, { outcome: 'committed', release: '1.1.0', loss: null });
  assert.deepEqual(asked, [['v1'], ['v2'], ['vhu9']]);
  assert.deepEqual(steps.filter(([, s]) => s === 'moved').map(([vm]) => vm), ['v1', 'v2', 'vhu9']);
});

test('a denied VM stays, the others move, and the host is held, not committed; a resume does not ask again', async () => {
  const a = new FakeAgent('h1', ['v1', 'v2', 'v3']);
  const { h, asked } = hooks((vms) => (vms[0] === 'v2' ? no : yes));
  assert.deepEqual(await upgradeHost(a, plan(), h), { outcome: 'held', denied: ['v2'] });
  assert.deepEqual(asked.flat(), ['v1', 'v2', 'v3']);
  assert.equal(a.st.state, 'switching');
  assert.deepEqual(a.st.vms.filter((v) => v.moved).map((v) => v.vm), ['v1', 'v3']);
  const again = hooks();
  assert.deepEqual(await upgradeHost(a, plan({ denied: ['v2'] }), again.h), { outcome: 'held', denied: ['v2'] });
  assert.deepEqual(again.asked, [], 'nothing left to ask');
});

test('a switch the agent judges over budget stops the host there, uncommitted, and says why in the figures the agent measured', async () => {
  const a = new FakeAgent('h1', ['v1', 'v2', 'v3'], { v2: { breakMs: 9.5 } });
  const { h, asked } = hooks();
  const r = await upgradeHost(a, plan(), h);
  assert.equal(r.outcome, 'failed');
  assert.match((r as { error: string }).error, /^v2: break 9\.5 ms is over the 5 ms budget; the host stays with both generations/);
  assert.deepEqual(asked.flat(), ['v1', 'v2'], 'v3 is not asked after the stop');
  assert.equal(a.calls.includes('upgrade/commit'), false);
  // lost frames alone are over a budget of 0 too
  const b = new FakeAgent('h2', ['v1'], { v1: { lost: 2 } });
  const rb = await upgradeHost(b, plan(), hooks().h);
  assert.match((rb as { error: string }).error, /v1: 2 frames lost, over the budget of 0/);
});

test('auto mode: the agent moves every VM on its own; the driver waits on its pushed state, commits within budget, stops over it', async () => {
  const a = new FakeAgent('h1', ['v1', 'v2', 'v3']);
  const { h, asked } = hooks(() => assert.fail('auto mode asks nobody'));
  assert.deepEqual(await upgradeHost(a, plan({ approval: 'auto' }), h), { outcome: 'committed', release: '1.1.0', loss: null });
  assert.deepEqual(asked, []);
  assert.equal(a.calls.filter((c) => c === 'upgrade/status').length, 1, 'no polling: one status at the start, then pushes');
  const b = new FakeAgent('h2', ['v1', 'v2', 'v3'], { v2: { lost: 1 } });
  const r = await upgradeHost(b, plan({ approval: 'auto' }), hooks().h);
  assert.equal(r.outcome, 'failed');
  assert.match((r as { error: string }).error, /over budget/);
  assert.deepEqual(b.st.vms.map((v) => v.moved), [true, true, false]);
});

test('a swap asks once for all of a host\'s VMs', async () => {
  const a = new FakeAgent('h1', ['v1', 'v2']);
  const { h, asked } = hooks();
  assert.equal((await upgradeHost(a, plan({ mode: 'swap' }), h)).outcome, 'committed');
  assert.deepEqual(asked, [['v1', 'v2']]);
  const b = new FakeAgent('h2', ['v1', 'v2']);
  assert.deepEqual(await upgradeHost(b, plan({ mode: 'swap' }), hooks(() => no).h), { outcome: 'held', denied: ['v1', 'v2'] });
});

test('nobody to answer (the campaign stops): the host stays where it is; the next run continues from there', async () => {
  const a = new FakeAgent('h1', ['v1', 'v2']);
  let n = 0;
  assert.deepEqual(await upgradeHost(a, plan(), hooks(() => (n++ === 0 ? yes : null)).h), { outcome: 'stopped' });
  assert.deepEqual(a.st.vms.map((v) => v.moved), [true, false]);
  const { h, asked } = hooks();
  assert.equal((await upgradeHost(a, plan(), h)).outcome, 'committed');
  assert.deepEqual(asked, [['v2']], 'the VM that moved is not asked again');
});

test('a host already on the release is skipped; one moving elsewhere or by another mode is refused with the reason', async () => {
  assert.deepEqual(await upgradeHost(new FakeAgent('h1', ['v1'], {}, '1.1.0'), plan(), hooks().h), { outcome: 'skipped' });
  const a = new FakeAgent('h1', ['v1']);
  await a.request({ ...(await import('../../../protocol/agent.js')).agent.upgradePrepare }, { release: '1.2.0' });
  const r = await upgradeHost(a, plan(), hooks().h);
  assert.match((r as { error: string }).error, /the host is switching toward 1\.2\.0, not on its way to 1\.1\.0/);
  const b = new FakeAgent('h2', ['v1']);
  await upgradeHost(b, plan({ mode: 'swap' }), hooks(() => null).h);
  const rb = await upgradeHost(b, plan({ mode: 'handoff' }), hooks().h);
  assert.match((rb as { error: string }).error, /already moving to 1\.1\.0 by swap, the plan says handoff/);
});

test('the agent connection drops mid-host: the driver stops with the reason, the host keeps its state', async () => {
  const a = new FakeAgent('h1', ['v1', 'v2']);
  a.dropAt = 'upgrade/commit';
  await assert.rejects(upgradeHost(a, plan(), hooks().h), /h1: the connection to its agent dropped/);
  assert.equal(a.st.state, 'switching');
  // auto mode: waiting on pushes, the drop ends the wait
  const b = new FakeAgent('h2', ['v1']);
  const run = upgradeHost(b, plan({ approval: 'auto' }), hooks().h);
  b.dropAt = 'upgrade/run';
  await assert.rejects(run, /dropped/);
});

test('abort: a wait on the agent ends when the campaign aborts', async () => {
  const a = new FakeAgent('h1', ['v1']);
  const ctl = new AbortController();
  a.dropAt = null;
  const never = { ...a, request: a.request.bind(a), until: a.until.bind(a) };
  // the agent never reports back: only the abort ends the wait
  never.request = async (req, params) => (req.method === 'upgrade/run' ? structuredClone(a.st) : a.request(req, params)) as never;
  const run = upgradeHost(never, plan({ approval: 'auto' }), hooks(undefined, ctl.signal).h);
  setTimeout(() => ctl.abort(), 20);
  await assert.rejects(run, /stopped waiting/);
});
