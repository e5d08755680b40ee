// Integration tests of hitless-agent: the real agent over JSON-RPC on stdio (as SSH runs it),
// supervising a real keeper and hitless-dp generations, with probe VMs as the host's VMs.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { agent, AgentError, events, type UpgradeStatus } from '../../../protocol/agent.js';
import { CtlClient } from '../native/ctlClient.js';
import { dp } from '../../../protocol/native/dp.js';
import { KeeperEvent } from '../../../protocol/native/keeper.js';
import { measured } from '../../../protocol/native/probe.js';
import { explainLoss, switchesOf, type SwitchMark } from '../../../testing/lossReport.js';
import { alive } from './supervisor.js';
import { agentsOn, exited, genDrops, hostRoot, probeOn } from '../../../testing/agentHost.js';
import { Testbed } from '../../../testing/testbed.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('hitless-agent', () => {
  const bed = new Testbed('agent');
  const { spawn: spawnAgent, cleanup } = agentsOn(bed);
  /** A host on release 1.0.0 through its agent, with n probe VMs sending to each other. */
  const upHost = async (name: string, n: number, manifests = false) => {
    const root = hostRoot(bed, name, n, manifests);
    const a = spawnAgent(root);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const probe = await probeOn(bed, root, name, n);
    await sleep(300);
    return { root, a, probe };
  };
  /** Every switch as the keeper makes it, whoever asked: a loss, if any, is placed against them. */
  const keeperSwitches = async (root: string) => {
    const switches: SwitchMark[] = [];
    const kctl = await CtlClient.connect(join(root, 'run', 'keeper', 'ctl.sock'), 2000);
    await kctl.subscribe((e) => {
      const ev = KeeperEvent.safeParse(e);
      if (ev.success) switches.push(...switchesOf([ev.data]));
    });
    return { switches, close: () => kctl.close() };
  };
  after(cleanup);

  test('upgrades a host VM by VM on approval, measures each switch, and retires the old generation at commit', async () => {
    const root = hostRoot(bed, 'h1', 4);
    const a = spawnAgent(root);
    const info = await a.client.request(agent.hostStart, { release: '1.0.0' });
    assert.equal(info.active?.release, '1.0.0');
    assert.ok(info.keeper.alive);
    assert.deepEqual(info.releases, ['1.0.0', '1.1.0']);
    const probe = await probeOn(bed, root, 'h1', 4);
    await sleep(500);
    let st = await a.client.request(agent.upgradePrepare, { release: '1.1.0' });
    assert.equal(st.state, 'switching');
    assert.equal(st.target?.release, '1.1.0');
    const oldGen = st.active!.gen;
    const oldPid = (await a.client.request(agent.genList, {})).gens.find((g) => g.gen === oldGen)!.pid;
    // nothing moves without an approval naming the VM
    assert.ok(st.vms.every((v) => v.serving === oldGen && !v.moved));
    st = await a.client.request(agent.upgradeSwitch, { vms: ['v1'] });
    assert.deepEqual(st.vms.filter((v) => v.moved).map((v) => v.vm), ['v1']);
    assert.equal(st.vms.find((v) => v.vm === 'v1')!.serving, st.target!.gen);
    await a.client.request(agent.upgradeSwitch, { vms: ['v2', 'v3', 'v4'] });
    assert.equal(a.measurements.length, 4, 'one measurement notification per VM');
    const drops = await genDrops(root, [st.active!.gen, st.target!.gen]);
    for (const m of a.measurements) {
      assert.ok(m.window_us > 0 && m.window_us < 100000, `${m.vm}: window ${m.window_us} us: ${JSON.stringify(m)}`);
      assert.ok(m.rings.length >= 2);
      assert.equal(m.dropped, 0, `${m.vm}: the datapath dropped nothing for it during its switch: ${JSON.stringify(m)}; ${drops}`);
      assert.ok(m.witness !== null, `${m.vm}: the probe's view is part of the measurement`);
      assert.equal(m.lost_basis, 'witness');
      assert.equal(m.lost, 0, `${m.vm}: the probe counted nothing lost around its switch`);
    }
    assert.ok(a.measurements.some((m) => m.passive_gap_us !== null), 'the datapath gap is measured');
    st = await a.client.request(agent.upgradeCommit, {});
    assert.equal(st.state, 'idle');
    assert.equal(st.last_outcome, 'committed');
    assert.equal(st.active?.release, '1.1.0');
    assert.equal(alive(oldPid), false, 'the old generation is stopped');
    // the host's own record of the switches outlives the commit, figure for figure
    const hist = await a.client.request(agent.upgradeHistory, {});
    assert.deepEqual(hist.switches.map((x) => x.measurement), a.measurements);
    // rates for the live view: every VM receives its one 5000 frames/s flow, across the switch and after it
    await sleep(2200);
    const last = a.traffic.at(-1)!;
    assert.deepEqual(last.map((v) => v.vm).sort(), ['v1', 'v2', 'v3', 'v4']);
    for (const v of last) assert.ok(v.rx_pps > 2500 && v.rx_pps < 7500 && v.tx_pps > 2500 && v.tx_pps < 7500, JSON.stringify(v));
    assert.ok(a.traffic.length >= 3, `one traffic event a second (${a.traffic.length})`);
    await sleep(300);
    const sum = await probe.stop();
    console.log(`per-switch probe lost: ${a.measurements.map((m) => `${m.vm}=${m.lost}`).join(' ')}; end of run: ${sum.totals.lost}`);
    assert.equal(sum.totals.lost, 0, JSON.stringify(measured(sum).map((f) => [f.src, f.dst, f.lost])));
    assert.equal(sum.totals.dup, 0);
    assert.equal(probe.events.filter((e) => e.event === 'link').length, 0);
  });

  test('swap mode: the stage is replaced in place on one approval for the host, 0 lost; rolled back and committed; a core change is refused', async () => {
    const { root, a, probe } = await upHost('h7', 3, true);
    // a release with another process core cannot be swapped in: the operator is told why
    const far = await a.client.request(agent.upgradePlan, { release: '1.2.0' });
    assert.equal(far.recommended, 'handoff');
    assert.match(far.modes.find((m) => m.mode === 'swap')!.reason, /changes the datapath core/);
    await assert.rejects(a.client.request(agent.upgradePrepare, { release: '1.2.0', mode: 'swap' }), (e: { code: number; message: string }) => {
      assert.equal(e.code, AgentError.InvalidState);
      assert.match(e.message, /swap cannot take h7 to 1\.2\.0: .*changes the datapath core/);
      return true;
    });
    // 1.1.0 has the same core: swap is offered, converting the FDB (layout 1 -> 2), and predicted smaller
    const plan = await a.client.request(agent.upgradePlan, { release: '1.1.0' });
    assert.equal(plan.recommended, 'swap');
    const [handoff, swap] = [plan.modes.find((m) => m.mode === 'handoff')!, plan.modes.find((m) => m.mode === 'swap')!];
    assert.ok(swap.available && swap.approvals === 'per-host', JSON.stringify(swap));
    assert.match(swap.reason, /converting \d+ FDB entries from state layout 1 to 2/);
    assert.ok(swap.predicted_break_us < handoff.predicted_break_us, JSON.stringify(plan.modes));

    let st = await a.client.request(agent.upgradePrepare, { release: '1.1.0', mode: 'auto' });
    assert.equal(st.mode, 'swap');
    assert.equal(st.state, 'switching');
    const gen = st.active!.gen;
    assert.equal(st.target?.gen, gen, 'no second generation');
    const pid = (await a.client.request(agent.genList, {})).gens.find((g) => g.gen === gen)!.pid;
    await assert.rejects(a.client.request(agent.upgradeSwitch, { vms: ['v1'] }), /moves every VM of h7 at once: approve all of them \(v2, v3 missing\)/);
    const ctl = await CtlClient.connect(join(root, 'run', `gen-${gen}`, 'ctl.sock'), 2000);
    try {
      // prepare loaded 1.1.0's stage beside the running one; nothing switched yet
      const lib0 = await ctl.request(dp.libInfo, {});
      assert.equal(lib0.staged?.path, join(root, 'releases', '1.1.0', 'bin', 'hitless-fwd-l2.so'));
      assert.equal(lib0.stage.layout, 1);
      st = await a.client.request(agent.upgradeSwitch, { vms: ['v1', 'v2', 'v3'] });
      assert.ok(st.vms.every((v) => v.moved && v.serving === gen), JSON.stringify(st.vms));
      assert.equal((await ctl.request(dp.libInfo, {})).stage.layout, 2);
      assert.equal(a.measurements.length, 3, 'one measurement per VM');
      for (const m of a.measurements) {
        assert.equal(m.mode, 'swap');
        assert.equal(m.dropped, 0, `${m.vm}: dropped`);
        assert.ok(m.window_us > 0 && m.window_us < 5000, `${m.vm}: window ${m.window_us} us`);
        assert.match(m.anomalies.join(), /state layout 1 -> 2: \d+ entries converted by the incoming stage/);
      }
      // rollback puts the 1.0.0 stage back inside the same generation
      st = await a.client.request(agent.upgradeRollback, {});
      assert.equal(st.last_outcome, 'rolled-back');
      assert.equal(st.active?.release, '1.0.0');
      assert.equal((await ctl.request(dp.libInfo, {})).stage.layout, 1);
      // and again, to commit: the generation runs 1.1.0's stage on 1.0.0's core
      await a.client.request(agent.upgradePrepare, { release: '1.1.0', mode: 'swap' });
      await a.client.request(agent.upgradeSwitch, { vms: ['v1', 'v2', 'v3'] });
      st = await a.client.request(agent.upgradeCommit, {});
      assert.equal(st.last_outcome, 'committed');
      assert.deepEqual(st.active, { gen, release: '1.1.0', core: '1.0.0', kind: 'hitless-dp' });
      assert.equal((await a.client.request(agent.genList, {})).gens.find((g) => g.gen === gen)!.pid, pid, 'the same process throughout');
      assert.equal((await ctl.request(dp.libInfo, {})).stage.path, join(root, 'releases', '1.1.0', 'bin', 'hitless-fwd-l2.so'));
      // a swap prepared and then aborted leaves nothing loaded ahead
      await a.client.request(agent.upgradePrepare, { release: '1.0.0', mode: 'swap' });
      assert.notEqual((await ctl.request(dp.libInfo, {})).staged, null);
      st = await a.client.request(agent.upgradeAbort, {});
      assert.equal(st.active?.release, '1.1.0');
      assert.equal((await ctl.request(dp.libInfo, {})).staged, null);
    } finally {
      ctl.close();
    }
    const hist = await a.client.request(agent.upgradeHistory, {});
    assert.equal(hist.switches.filter((x) => x.measurement?.mode === 'swap').length, 9, 'swap, rollback, swap: 3 VMs each');
    await sleep(300);
    const sum = await probe.stop();
    assert.equal(sum.totals.lost, 0, JSON.stringify(measured(sum).map((f) => [f.src, f.dst, f.lost])));
    assert.equal(probe.events.filter((e) => e.event === 'link').length, 0);
  });

  test('swap mode, auto approval: within budget it swaps on its own; over budget it says so and waits for rollback', async () => {
    const { root, a, probe } = await upHost('h9', 2, true);
    // upgrade/run answers at once and the agent goes on: wait for the outcome
    const run = async (done: (s: UpgradeStatus) => boolean) => {
      await a.client.request(agent.upgradeRun, {});
      for (let i = 0; i < 100; i++) {
        const s = await a.client.request(agent.upgradeStatus, {});
        if (done(s)) return s;
        await sleep(100);
      }
      throw new Error('upgrade/run did not finish in 10 s');
    };
    await a.client.request(agent.upgradePrepare, { release: '1.1.0', mode: 'swap', approve: { auto: { max_gap_ms: 200, max_lost: 0 } } });
    let st = await run((s) => s.error !== null || s.vms.every((v) => v.moved));
    assert.ok(st.vms.every((v) => v.moved && v.measurement?.mode === 'swap' && v.measurement.within_budget === true), JSON.stringify(st.vms));
    assert.equal(st.error, null);
    st = await a.client.request(agent.upgradeRollback, {});
    assert.equal(st.last_outcome, 'rolled-back');
    // a budget no swap can meet: the swap is made and measured, then reported over budget
    await a.client.request(agent.upgradePrepare, { release: '1.1.0', mode: 'swap', approve: { auto: { max_gap_ms: 0.00001, max_lost: 0 } } });
    st = await run((s) => s.error !== null);
    assert.match(st.error ?? '', /over budget on v1, v2; the stage stays swapped until rollback or commit/);
    assert.ok(st.vms.every((v) => v.measurement?.within_budget === false));
    st = await a.client.request(agent.upgradeRollback, {});
    assert.equal(st.active?.release, '1.0.0');
    const ctl = await CtlClient.connect(join(root, 'run', `gen-${st.active!.gen}`, 'ctl.sock'), 2000);
    try {
      assert.equal((await ctl.request(dp.libInfo, {})).stage.layout, 1);
    } finally {
      ctl.close();
    }
    const sum = await probe.stop();
    assert.equal(sum.totals.lost, 0);
  });

  test('swap mode: an agent that died around the swap is replaced by one that asks the datapath which stage runs', async () => {
    const { root, a, probe } = await upHost('h8', 2, true);
    const st0 = await a.client.request(agent.upgradePrepare, { release: '1.1.0', mode: 'swap' });
    const gen = st0.active!.gen;
    a.proc.kill('SIGKILL');
    await exited(a.proc);
    // the journal says a swap was started; the datapath did make it (the agent died just after)
    const journal = join(root, 'var', 'journal.jsonl');
    const appendSwap = () => {
      const seq = readFileSync(journal, 'utf8').trim().split('\n').length;
      writeFileSync(journal, `${JSON.stringify({ type: 'swap', to: 'target', seq: seq + 1, t: new Date().toISOString() })}\n`, { flag: 'a' });
    };
    appendSwap();
    const ctl = await CtlClient.connect(join(root, 'run', `gen-${gen}`, 'ctl.sock'), 2000);
    try {
      await ctl.request(dp.libSwap, { path: join(root, 'releases', '1.1.0', 'bin', 'hitless-fwd-l2.so') });
      const b = spawnAgent(root);
      let st = await b.client.request(agent.upgradeStatus, {});
      assert.equal(st.state, 'switching');
      assert.ok(st.vms.every((v) => v.moved && v.measurement === null), `recorded as swapped, unmeasured: ${JSON.stringify(st.vms)}`);
      assert.match(b.stderr(), /the interrupted stage swap had completed \(l2 \S+ runs\)/);
      // rolled back by the new agent, then a swap that never reached the datapath
      st = await b.client.request(agent.upgradeRollback, {});
      assert.equal(st.last_outcome, 'rolled-back');
      await b.client.request(agent.upgradePrepare, { release: '1.1.0', mode: 'swap' });
      b.proc.kill('SIGKILL');
      await exited(b.proc);
      appendSwap();
      const c = spawnAgent(root);
      st = await c.client.request(agent.upgradeStatus, {});
      assert.ok(st.vms.every((v) => !v.moved), JSON.stringify(st.vms));
      assert.match(st.error ?? '', /stage swap: agent restarted; the stage had not changed/);
      assert.equal((await ctl.request(dp.libInfo, {})).stage.layout, 1, "1.0.0's stage still runs");
      // the operator goes on from there
      await c.client.request(agent.upgradeSwitch, { vms: ['v1', 'v2'] });
      st = await c.client.request(agent.upgradeCommit, {});
      assert.deepEqual(st.active, { gen, release: '1.1.0', core: '1.0.0', kind: 'hitless-dp' });
    } finally {
      ctl.close();
    }
    const sum = await probe.stop();
    assert.equal(sum.totals.lost, 0);
  });

  test('swap mode: a generation that died with a swap in flight leaves an agent that still serves, says why, and can be rolled back', async () => {
    const root = hostRoot(bed, 'h10', 2, true);
    const a = spawnAgent(root);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const st0 = await a.client.request(agent.upgradePrepare, { release: '1.1.0', mode: 'swap' });
    a.proc.kill('SIGKILL');
    await exited(a.proc);
    const journal = join(root, 'var', 'journal.jsonl');
    const seq = readFileSync(journal, 'utf8').trim().split('\n').length;
    writeFileSync(journal, `${JSON.stringify({ type: 'swap', to: 'target', seq: seq + 1, t: new Date().toISOString() })}\n`, { flag: 'a' });
    const pid = Number(readFileSync(join(root, 'run', `gen-${st0.active!.gen}`, 'dp.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    while (alive(pid)) await sleep(20);
    const b = spawnAgent(root);
    let st = await b.client.request(agent.upgradeStatus, {});
    assert.match(st.error ?? '', /generation \S+ is not running/);
    assert.match(b.stderr(), /the interrupted stage swap cannot be checked/);
    st = await b.client.request(agent.upgradeAbort, {});
    assert.equal(st.state, 'idle');
    assert.equal(st.active?.release, '1.0.0');
    // and the host comes back on its release
    const info = await b.client.request(agent.hostStart, { release: '1.0.0' });
    assert.equal(info.active?.release, '1.0.0');
    assert.ok((await b.client.request(agent.genList, {})).gens.some((g) => g.role === 'active' && g.alive));
  });

  test('rollback returns every VM to the old generation with traffic flowing, and stops the new one', async () => {
    const { root, a, probe } = await upHost('h2', 3);
    const { switches, close } = await keeperSwitches(root);
    const st0 = await a.client.request(agent.upgradePrepare, { release: '1.1.0' });
    await a.client.request(agent.upgradeSwitch, { vms: ['v1', 'v2'] });
    const targetPid = (await a.client.request(agent.genList, {})).gens.find((g) => g.role === 'target')!.pid;
    const st = await a.client.request(agent.upgradeRollback, {});
    assert.equal(st.state, 'idle');
    assert.equal(st.last_outcome, 'rolled-back');
    assert.equal(st.active?.gen, st0.active!.gen);
    assert.ok(st.vms.every((v) => v.serving === st0.active!.gen), JSON.stringify(st.vms));
    assert.equal(alive(targetPid), false);
    const sum = await probe.stop();
    close();
    assert.equal(sum.totals.lost, 0, explainLoss(sum, probe.events, switches));
    assert.equal(sum.totals.dup, 0, explainLoss(sum, probe.events, switches));
  });

  test('an agent killed mid-switch is replaced by one that knows where every VM is and finishes the job', async () => {
    const { root, a, probe } = await upHost('h3', 4);
    const { switches, close } = await keeperSwitches(root);
    const st0 = await a.client.request(agent.upgradePrepare, { release: '1.1.0' });
    const pending = a.client.request(agent.upgradeSwitch, { vms: ['v1', 'v2', 'v3', 'v4'] }).catch(() => undefined);
    while (a.measurements.length < 1) await sleep(5);
    a.proc.kill('SIGKILL');
    await exited(a.proc);
    void pending;
    const b = spawnAgent(root);
    const st = await b.client.request(agent.upgradeStatus, {});
    assert.equal(st.state, 'switching');
    // the journal and the keeper agree: moved VMs are on the target, the others on the old one
    for (const v of st.vms) assert.equal(v.serving, v.moved ? st0.target!.gen : st0.active!.gen, JSON.stringify(v));
    assert.ok(st.vms.filter((v) => v.moved).length >= 1);
    // the generations kept forwarding without an agent; the new one finishes the upgrade
    const rest = st.vms.filter((v) => !v.moved).map((v) => v.vm);
    if (rest.length) await b.client.request(agent.upgradeSwitch, { vms: rest });
    const done = await b.client.request(agent.upgradeCommit, {});
    assert.equal(done.active?.release, '1.1.0');
    await sleep(300);
    const sum = await probe.stop();
    close();
    assert.equal(sum.totals.lost, 0, explainLoss(sum, probe.events, switches));
    assert.equal(sum.totals.dup, 0, explainLoss(sum, probe.events, switches));
  });

  test('auto mode within budget goes on when the connection drops, and the next agent shows the result', async () => {
    const { root, a, probe } = await upHost('h4', 3);
    await a.client.request(agent.upgradePrepare, { release: '1.1.0', approve: { auto: { max_gap_ms: 500, max_lost: 0 } } });
    await a.client.request(agent.upgradeRun, {});
    a.proc.stdin!.end(); // the SSH session drops
    await exited(a.proc);
    const b = spawnAgent(root);
    const st = await b.client.request(agent.upgradeStatus, {});
    assert.ok(st.vms.every((v) => v.moved && v.measurement?.within_budget === true), JSON.stringify(st.vms));
    await b.client.request(agent.upgradeCommit, {});
    const sum = await probe.stop();
    assert.equal(sum.totals.lost, 0);
  });

  test('reports the health of the host: all well, then the active generation gone', async () => {
    const root = hostRoot(bed, 'h6', 2);
    const a = spawnAgent(root);
    const health: { ok: boolean; problems: string[] }[] = [];
    a.client.on(events.health, (h) => health.push(h));
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const probe = await probeOn(bed, root, 'h6', 2);
    const wait = async (pred: () => boolean) => {
      for (let i = 0; i < 100 && !pred(); i++) await sleep(100);
      assert.ok(pred(), JSON.stringify(health.slice(-3)));
    };
    await wait(() => health.some((h) => h.ok));
    const gen = (await a.client.request(agent.genList, {})).gens[0]!;
    process.kill(gen.pid!, 'SIGKILL');
    await wait(() => health.some((h) => !h.ok && h.problems.includes(`active generation ${gen.gen} is not running`)));
    probe.kill();
  });

  test('refuses bad requests with clear errors and changes nothing', async () => {
    const root = hostRoot(bed, 'h5', 2);
    const a = spawnAgent(root);
    const expectError = async (p: Promise<unknown>, code: number, re: RegExp) =>
      assert.rejects(p, (e: unknown) => (e as { code?: number }).code === code && re.test((e as Error).message));
    await expectError(a.client.raw('upgrade/prepare', { release: 'latest' }), -32602, /release: a release version/);
    await expectError(a.client.raw('upgrade/switch', { vms: 'v1' }), -32602, /vms/);
    await expectError(a.client.raw('host/start', { release: '1.0.0', extra: 1 }), -32602, /extra|Unrecognized/);
    await expectError(a.client.raw('no/such', {}), -32601, /no\/such|not found|Unhandled/);
    await expectError(a.client.request(agent.hostStart, { release: '9.9.9' }), AgentError.UnknownRelease, /9\.9\.9 is not installed/);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    await expectError(a.client.request(agent.upgradeSwitch, { vms: ['v1'] }), AgentError.InvalidState, /needs state switching; the host is idle/);
    await expectError(a.client.request(agent.upgradeCommit, {}), AgentError.InvalidState, /needs state switching/);
    await a.client.request(agent.upgradePrepare, { release: '1.1.0' });
    await expectError(a.client.request(agent.upgradeSwitch, { vms: ['nope'] }), AgentError.UnknownVm, /no VM nope/);
    await expectError(a.client.request(agent.upgradePrepare, { release: '1.1.0' }), AgentError.InvalidState, /the host is switching/);
    const st = await a.client.request(agent.upgradeStatus, {});
    assert.equal(st.vms.filter((v) => v.moved).length, 0);
    await a.client.request(agent.upgradeAbort, {});
  });
});
