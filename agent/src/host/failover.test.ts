// Integration tests of a host losing a generation (kill -9) under its agent: the keeper moves
// the sessions at once, the agent records the death, reports the host exposed and restores a
// standby on its own (failover.ts). Real agent on stdio, keeper, generations and probe VMs.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { agent, events, type UpgradeStatus } from '../../../protocol/agent.js';
import { measured, probe as probeCmd } from '../../../protocol/native/probe.js';
import { agentsOn, hostRoot, probeOn, type Agent } from '../../../testing/agentHost.js';
import { CtlClient } from '../native/ctlClient.js';
import { Journal } from './journal.js';
import { Testbed } from '../../../testing/testbed.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function kill9(root: string, gen: string): void {
  process.kill(Number(readFileSync(join(root, 'run', `gen-${gen}`, 'dp.pid'), 'utf8').trim()), 'SIGKILL');
}

/** Poll the agent's status until pred holds (30 s at most). */
async function until(a: Agent, pred: (s: UpgradeStatus) => boolean, what: string): Promise<UpgradeStatus> {
  const deadline = Date.now() + 30000;
  for (;;) {
    const s = await a.client.request(agent.upgradeStatus, {});
    if (pred(s)) return s;
    assert.ok(Date.now() < deadline, `${what}: ${JSON.stringify({ ...s, vms: s.vms.map((v) => [v.vm, v.serving]) })}\n${a.stderr().slice(-2000)}`);
    await sleep(100);
  }
}

describe('hitless-agent: a generation dies', () => {
  const bed = new Testbed('failover');
  const { spawn: spawnAgent, cleanup } = agentsOn(bed);
  after(cleanup);

  test('kill -9 mid-upgrade: every VM fails over, the agent reports the host exposed and restores a standby on its own; a second kill -9 fails over again with no operator action; only frames inside the dead were lost', async () => {
    const root = hostRoot(bed, 'f1', 4);
    const a = spawnAgent(root);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const probe = await probeOn(bed, root, 'f1', 4);
    await sleep(500);
    let st = await a.client.request(agent.upgradePrepare, { release: '1.1.0' });
    const [A, B] = [st.active!.gen, st.target!.gen];
    assert.equal(st.standby, B, 'the target is the standby while nothing moved');
    assert.equal(st.exposed, null);
    const seen: UpgradeStatus[] = [];
    a.client.on(events.state, (s) => seen.push(s));

    kill9(root, A);
    st = await until(a, (s) => s.failovers.length === 1 && s.failovers[0]!.restored !== null && s.standby !== null, `${A} killed: a standby restored`);
    assert.ok(seen.some((s) => s.exposed?.gen === A), 'the host was reported exposed until a standby was back');
    const f1 = st.failovers[0]!;
    assert.equal(f1.gen, A);
    assert.deepEqual(f1.moved.map((m) => `${m.vm}>${m.to}`).sort(), ['v1', 'v2', 'v3', 'v4'].map((v) => `${v}>${B}`));
    assert.deepEqual(f1.down, []);
    assert.notEqual(f1.lost_inside, null, 'the frames inside the dead process are counted');
    const A2 = f1.restored!.gen;
    assert.deepEqual([st.active?.gen, st.active?.release, st.target?.gen, st.standby, st.exposed], [A2, '1.0.0', B, A2, null], 'a 1.0.0 replacement is the active generation and the standby');
    assert.ok(st.vms.every((v) => v.serving === B && v.moved), 'the VMs count as moved to the target');

    kill9(root, B);
    st = await until(a, (s) => s.failovers.length === 2 && s.failovers[1]!.restored !== null && s.standby !== null, `${B} killed: a standby restored again`);
    const f2 = st.failovers[1]!;
    assert.deepEqual(f2.moved.map((m) => `${m.vm}>${m.to}`).sort(), ['v1', 'v2', 'v3', 'v4'].map((v) => `${v}>${A2}`));
    const B2 = f2.restored!.gen;
    assert.deepEqual([st.active?.gen, st.target?.gen, st.target?.release, st.standby, st.state], [A2, B2, '1.1.0', B2, 'switching']);
    assert.ok(st.vms.every((v) => v.serving === A2 && !v.moved), 'back on the active release: not moved');

    // the upgrade goes on from here: one VM to the restored target and back, then abort
    await a.client.request(agent.upgradeSwitch, { vms: ['v1'] });
    await a.client.request(agent.upgradeRollback, { vms: ['v1'] });
    st = await a.client.request(agent.upgradeAbort, {});
    assert.deepEqual([st.state, st.active?.gen], ['idle', A2]);
    await sleep(300);
    const sum = await probe.stop();
    const inside = (f1.lost_inside ?? 0) + (f2.lost_inside ?? 0);
    assert.equal(sum.totals.lost, inside, `lost ${sum.totals.lost}, inside the dead generations ${inside}: ${JSON.stringify(measured(sum).map((f) => [f.src, f.dst, f.lost]))}`);
    assert.equal(sum.totals.dup, 0);
    assert.deepEqual(probe.events.filter((e) => e.event === 'link'), [], 'no frontend saw its link move');
    console.log(`two crashes: standby back ${f1.restored!.took_ms.toFixed(0)} ms and ${f2.restored!.took_ms.toFixed(0)} ms after each; lost ${sum.totals.lost}, all inside the dead (${f1.lost_inside}+${f2.lost_inside}); worst gap ${Math.max(...measured(sum).map((f) => f.max_gap_us)) / 1000} ms`);
  });

  test('kill -9 of the keeper mid-upgrade (frontends as vhost-user servers): every frontend sees its link go down and up once, the agent has a keeper again with both generations and every VM where it was, traffic flows again, and the upgrade goes on', async () => {
    const root = hostRoot(bed, 'k1', 2, false, { frontendServers: true });
    const a = spawnAgent(root);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const probe = await probeOn(bed, root, 'k1', 2, true);
    await sleep(500);
    let st = await a.client.request(agent.upgradePrepare, { release: '1.1.0' });
    const [A, B] = [st.active!.gen, st.target!.gen];
    await a.client.request(agent.upgradeSwitch, { vms: ['v1'] });
    const standbyBefore = (await a.client.request(agent.upgradeStatus, {})).standby;
    const keeperPid = () => Number(readFileSync(join(root, 'run', 'keeper', 'keeper.pid'), 'utf8').trim());
    const before = keeperPid();
    const t0 = Date.now();
    process.kill(before, 'SIGKILL');
    const links = () => probe.events.filter((e) => e.event === 'link');
    const deadline = Date.now() + 30000;
    while (links().filter((e) => e.data.up).length < 2) {
      assert.ok(Date.now() < deadline, `the frontends did not come back: ${JSON.stringify(probe.events.slice(-6))}\n${a.stderr().slice(-2000)}`);
      await sleep(20);
    }
    const backMs = Date.now() - t0;
    // each frontend: its link down once, then up once
    for (const vm of ['v1', 'v2']) assert.deepEqual(links().filter((e) => e.data.vm === vm).map((e) => e.data.up), [false, true], `${vm}: ${JSON.stringify(links())}`);
    const after = keeperPid();
    assert.notEqual(after, before, 'a new keeper process');
    // the agent journals the restore once the frontends are back and the standby is pre-loaded
    const journal = () => Journal.read(join(root, 'var', 'journal.jsonl'));
    while (!journal().some((e) => e.type === 'keeper-restored')) {
      assert.ok(Date.now() < deadline, `no keeper-restored in the journal\n${a.stderr().slice(-2000)}`);
      await sleep(20);
    }
    const j = journal();
    const lost = j.find((e) => e.type === 'keeper-lost');
    const restored = j.find((e) => e.type === 'keeper-restored');
    assert.equal(lost?.type === 'keeper-lost' && lost.cause, 'its process is gone');
    assert.ok(restored?.type === 'keeper-restored');
    assert.equal(restored.pid, after);
    assert.deepEqual(restored.down, []);
    // the sessions where they were: v1 on the target, v2 on the active; the standby as before
    st = await a.client.request(agent.upgradeStatus, {});
    assert.deepEqual(st.vms.map((v) => [v.vm, v.serving, v.connected]), [['v1', B, true], ['v2', A, true]]);
    assert.equal(st.standby, standbyBefore);
    // traffic flows again on every flow
    const received = async () => {
      const c = await CtlClient.connect(join(root, 'run', 'probe.sock'));
      try {
        return measured(await c.request(probeCmd.statsShow, {})).map((f) => f.received);
      } finally {
        c.close();
      }
    };
    const r0 = await received();
    await sleep(500);
    const r1 = await received();
    r1.forEach((n, i) => assert.ok(n > r0[i]! + 100, `flow ${i} flows again: ${r0[i]} -> ${n}`));
    // the upgrade goes on: v2 switched over without a frontend event, then the host back
    const flaps = links().length;
    await a.client.request(agent.upgradeSwitch, { vms: ['v2'] });
    st = await a.client.request(agent.upgradeAbort, {});
    assert.deepEqual([st.state, st.active?.gen], ['idle', A]);
    assert.ok(st.vms.every((v) => v.serving === A && v.connected));
    assert.equal(links().length, flaps, 'switches after the keeper came back flap no link');
    probe.kill();
    console.log(`keeper kill -9: frontends back ${backMs} ms after the kill (agent: keeper again after ${restored.took_ms.toFixed(0)} ms, every frontend after ${restored.outage_ms?.toFixed(0)} ms of its work)`);
  });

  test('keeper/upgrade mid-upgrade through the agent: the installed keeper takes every session over with no frontend event, the journal says so and the upgrade goes on; an agent stopped during one finds out from the keeper how it went', async () => {
    const root = hostRoot(bed, 'k2', 2, false, { frontendServers: true });
    const a = spawnAgent(root);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const probe = await probeOn(bed, root, 'k2', 2, true);
    await sleep(500);
    let st = await a.client.request(agent.upgradePrepare, { release: '1.1.0' });
    const [A, B] = [st.active!.gen, st.target!.gen];
    await a.client.request(agent.upgradeSwitch, { vms: ['v1'] });
    const v0 = await a.client.request(agent.keeperVersions, {});
    assert.ok(v0.running && v0.installed, JSON.stringify(v0));
    assert.deepEqual([v0.running.version, v0.due], [v0.installed, false], 'the keeper running is the one installed');
    const up = await a.client.request(agent.keeperUpgrade, {});
    assert.notEqual(up.pid, up.from_pid);
    assert.deepEqual([up.sessions, up.vms, up.version], [2, 2, v0.installed]);
    assert.equal((await a.client.request(agent.keeperVersions, {})).running?.pid, up.pid, 'the agent talks to the new keeper');
    const journal = () => Journal.read(join(root, 'var', 'journal.jsonl'));
    const entries = journal().filter((e) => e.type.startsWith('keeper-upgrade'));
    assert.deepEqual(entries.map((e) => e.type), ['keeper-upgrade', 'keeper-upgraded']);
    assert.ok(entries[1]!.type === 'keeper-upgraded' && entries[1]!.pid === up.pid && !entries[1]!.recovered);
    st = await a.client.request(agent.upgradeStatus, {});
    assert.deepEqual(st.vms.map((v) => [v.vm, v.serving, v.connected]), [['v1', B, true], ['v2', A, true]]);
    // the upgrade goes on: v2 switched, then the host rolled back to A
    await a.client.request(agent.upgradeSwitch, { vms: ['v2'] });
    st = await a.client.request(agent.upgradeAbort, {});
    assert.deepEqual([st.state, st.active?.gen], ['idle', A]);
    assert.ok(st.vms.every((v) => v.serving === A && v.connected));
    assert.deepEqual(probe.events.filter((e) => e.event === 'link'), [], 'no frontend saw its link move');
    // an agent stopped between asking and hearing: the next one asks the keeper that runs
    a.proc.kill('SIGKILL');
    await new Promise((r) => a.proc.once('exit', r));
    new Journal(join(root, 'var', 'journal.jsonl')).append({ type: 'keeper-upgrade', from_pid: up.from_pid, from_version: up.from_version, to_version: up.version, binary: join(root, 'bin', 'hitless-keeper') });
    const a2 = spawnAgent(root);
    await a2.client.request(agent.hostInfo, {});
    const lastOf = () => journal().filter((e) => e.type.startsWith('keeper-upgrade')).at(-1);
    for (const t = Date.now(); lastOf()?.type === 'keeper-upgrade'; await sleep(50)) assert.ok(Date.now() - t < 20000, `the new agent did not settle the keeper upgrade\n${a2.stderr().slice(-1000)}`);
    const last = lastOf();
    assert.ok(last?.type === 'keeper-upgraded' && last.recovered && last.pid === up.pid && last.pause_us === null, JSON.stringify(last));
    probe.kill();
    console.log(`keeper upgrade through the agent: control paused ${((up.pause_us ?? 0) / 1000).toFixed(1)} ms, ${up.sessions} sessions kept`);
  });

  test('with standby restoration off: the host stays exposed after a failover, and a second kill -9 takes the frontends\' links down, never a silent blackhole', async () => {
    const root = hostRoot(bed, 'f2', 2, false, { restoreStandby: false });
    const a = spawnAgent(root);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const probe = await probeOn(bed, root, 'f2', 2);
    await sleep(300);
    let st = await a.client.request(agent.upgradePrepare, { release: '1.1.0' });
    const [A, B] = [st.active!.gen, st.target!.gen];
    kill9(root, A);
    st = await until(a, (s) => s.failovers.length === 1, `${A} killed`);
    await sleep(2500);
    st = await a.client.request(agent.upgradeStatus, {});
    assert.equal(st.exposed?.gen, A, 'exposed, and it stays so');
    assert.equal(st.standby, null);
    assert.equal(st.failovers[0]!.restored, null);
    assert.ok(st.vms.every((v) => v.serving === B && v.connected));
    assert.deepEqual(probe.events.filter((e) => e.event === 'link'), [], 'the first crash was not seen by the frontends');
    const t0 = Date.now();
    kill9(root, B);
    const deadline = Date.now() + 20000;
    while (probe.events.filter((e) => e.event === 'link' && !e.data.up).length < 2) {
      assert.ok(Date.now() < deadline, `the frontends did not see their links go down: ${JSON.stringify(probe.events.slice(-5))}`);
      await sleep(20);
    }
    const downMs = Date.now() - t0;
    st = await until(a, (s) => s.failovers.length === 2, `${B} killed`);
    assert.deepEqual([...st.failovers[1]!.down].sort(), ['v1', 'v2'], 'the agent records which VMs went down');
    assert.equal(st.exposed?.gen, B);
    probe.kill();
    console.log(`second crash with no standby: both frontends saw link down ${downMs} ms after the kill`);
  });

  test('kill -9 of the only generation (idle host, frontends as vhost-user servers): links go down, the agent restarts the release, the keeper reconnects the frontends; the outage is measured', async () => {
    const root = hostRoot(bed, 'f3', 2, false, { frontendServers: true });
    const a = spawnAgent(root);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const probe = await probeOn(bed, root, 'f3', 2, true);
    await sleep(500);
    let st = await a.client.request(agent.upgradeStatus, {});
    const A = st.active!.gen;
    assert.ok(st.vms.every((v) => v.connected && v.serving === A));
    kill9(root, A);
    st = await until(a, (s) => s.failovers.length === 1 && s.failovers[0]!.restored !== null, `${A} killed: restarted`);
    const f = st.failovers[0]!;
    assert.deepEqual([...f.down].sort(), ['v1', 'v2']);
    assert.notEqual(f.restored!.outage_ms, null, 'every frontend came back');
    assert.deepEqual([st.state, st.active?.gen, st.active?.release, st.exposed], ['idle', f.restored!.gen, '1.0.0', null]);
    assert.ok(st.vms.every((v) => v.connected && v.serving === f.restored!.gen), JSON.stringify(st.vms));
    const links = probe.events.flatMap((e) => (e.event === 'link' ? [`${e.data.vm} ${e.data.up ? 'up' : 'down'}`] : []));
    for (const vm of ['v1', 'v2']) assert.deepEqual(links.filter((l) => l.startsWith(`${vm} `)), [`${vm} down`, `${vm} up`], 'the guests saw the outage as a link down, then up');
    // traffic flows again
    const rx0 = (await probe.ctl!.request(probeCmd.statsShow, {})).vms['v1']!.rx;
    await sleep(500);
    if (process.env.DEBUG_F3) {
      console.log(JSON.stringify(await probe.ctl!.request(probeCmd.statsShow, {})));
      const { CtlClient } = await import('../native/ctlClient.js');
      const { dp } = await import('../../../protocol/native/dp.js');
      const c = await CtlClient.connect(join(root, 'run', `gen-${f.restored!.gen}`, 'ctl.sock'));
      console.log(JSON.stringify(await c.request(dp.statsShow, {})));
    }
    assert.ok((await probe.ctl!.request(probeCmd.statsShow, {})).vms['v1']!.rx > rx0 + 1000, 'v1 receives again');
    probe.kill();
    console.log(`only generation killed: restarted in ${f.restored!.took_ms.toFixed(0)} ms, frontends back ${f.restored!.outage_ms!.toFixed(0)} ms after the death`);
  });
});
