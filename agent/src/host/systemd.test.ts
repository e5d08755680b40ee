// The host package on a host where systemd is PID 1 (testing/systemdHost.ts: this machine's root
// booted by systemd-nspawn): installed with dpkg, releases installed with the packaged agent,
// the keeper and the generations run as the package's units. What only systemd can show: the
// keeper unit is Type=notify and ready once the keeper serves; a keeper upgrade makes the new
// keeper the unit's main process before the old one exits, so the unit, and every session, stay;
// a keeper killed is restarted by systemd and restored by the agent.
import assert from 'node:assert/strict';
import { readdirSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../client/agentClient.js';
import { CtlClient } from '../native/ctlClient.js';
import { agent } from '../../../protocol/agent.js';
import { keeper as keeperCmd } from '../../../protocol/native/keeper.js';
import { measured, probe as probeCmd } from '../../../protocol/native/probe.js';
import { SystemdHost } from '../../../testing/systemdHost.js';
import { labVms, Testbed } from '../../../testing/testbed.js';
import type { ProbeProcess } from '../../../testing/procs.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const dist = join(repo, 'dist');
const RUN = '/var/lib/hitless/run';
const UNIT = 'hitless-keeper.service';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the host package where systemd is PID 1', () => {
  const bed = new Testbed('sd');
  // the container's /var/lib/hitless/run is this directory: the probe outside reaches the sockets
  const run = join(bed.dir, 'run');
  let host: SystemdHost;
  let probe: ProbeProcess;
  let client: AgentClient;
  let agentErr = '';

  before(async () => {
    mkdirSync(join(run, 'vms'), { recursive: true });
    host = await SystemdHost.boot(`hl-sd-${process.pid}`, [
      { host: repo, readOnly: true },
      { host: run, inside: RUN },
    ]);
    const deb = readdirSync(dist).find((f) => /^hitless-host_.*_amd64\.deb$/.test(f));
    assert.ok(deb, `a host package in ${dist} (make package)`);
    await host.must('dpkg', ['-i', join(dist, deb)]);
    for (const v of ['1.0.0', '1.1.0']) await host.must('hitless-agent', ['release', 'install', join(dist, `hitless-release-${v}.tar`), '--root', '/var/lib/hitless']);
    // two VMs whose frontends are the vhost-user servers (as OpenStack lays them out)
    const cfg = { host: 'sd', vms: labVms(2).map((v) => ({ name: v.name, mac: v.mac, frontend_socket: `${RUN}/vms/${v.name}.sock` })), probe_ctl: `${RUN}/probe.sock` };
    await host.must('sh', ['-c', 'cat > /etc/hitless/agent.json'], { input: JSON.stringify(cfg) });
    const a = host.spawn('/usr/bin/hitless-agent', ['--stdio', '--root', '/var/lib/hitless']);
    a.stderr!.setEncoding('utf8').on('data', (d: string) => (agentErr += d));
    client = new AgentClient(a.stdout!, a.stdin!);
  });
  after(async () => {
    await host?.stop();
    bed.cleanup();
  });

  const mainPid = async () => Number(await host.property(UNIT, 'MainPID'));
  const keeperPid = async () => Number((await host.must('cat', [`${RUN}/keeper/keeper.pid`])).trim());
  const journal = async () => (await host.must('cat', ['/var/lib/hitless/var/journal.jsonl'])).trim().split('\n').map((l) => JSON.parse(l) as { type: string; [k: string]: unknown });
  const links = () => probe.events.filter((e) => e.event === 'link');
  const probeStats = async () => {
    const c = await CtlClient.connect(join(run, 'probe.sock'));
    try {
      return await c.request(probeCmd.statsShow, {});
    } finally {
      c.close();
    }
  };
  const received = async () => measured(await probeStats()).map((f) => f.received);

  test('the keeper runs as a Type=notify unit, ready once it serves; a keeper upgrade mid-upgrade makes the new keeper the unit\'s main process: the unit stays active, 0 frames lost, no frontend event, and the upgrade goes on', async () => {
    const info = await client.request(agent.hostInfo, {});
    assert.equal(info.supervisor?.mode, 'systemd', `${info.supervisor?.why}\n${agentErr}`);
    await client.request(agent.hostStart, { release: '1.0.0' });
    // the VMs' frontends: the keeper connects to them (it retries until they listen)
    probe = await bed.probe({
      name: 'sd',
      vms: labVms(2).map((v) => ({ ...v, socket: join(run, 'vms', `${v.name}.sock`), server: true })),
      flows: [
        { src: 'v1', dst: 'v2', pps: 5000 },
        { src: 'v2', dst: 'v1', pps: 5000 },
      ],
      durationS: 3600,
      ctlPath: join(run, 'probe.sock'),
    });
    assert.equal(await host.property(UNIT, 'Type'), 'notify');
    assert.equal(await host.property(UNIT, 'ActiveState'), 'active');
    assert.equal(await mainPid(), await keeperPid(), 'systemd names the keeper that serves as the unit\'s main process');
    let st = await client.request(agent.upgradePrepare, { release: '1.1.0' });
    const [A, B] = [st.active!.gen, st.target!.gen];
    await client.request(agent.upgradeSwitch, { vms: ['v1'] });
    assert.equal(await host.property(`hitless-gen@${B}.service`, 'ActiveState'), 'active', 'the generations run as units');
    const before = await probeStats();
    const from = await mainPid();
    const up = await client.request(agent.keeperUpgrade, {});
    assert.equal(up.from_pid, from);
    assert.notEqual(up.pid, from);
    assert.deepEqual([up.sessions, up.vms], [2, 2]);
    assert.equal(await mainPid(), up.pid, 'the new keeper is the unit\'s main process');
    assert.equal(await keeperPid(), up.pid);
    await sleep(300);
    assert.deepEqual([await host.property(UNIT, 'ActiveState'), await host.property(UNIT, 'NRestarts')], ['active', '0'], 'the old keeper\'s exit neither stopped nor restarted the unit');
    const j = await journal();
    assert.deepEqual(j.filter((e) => e.type.startsWith('keeper-upgrade')).map((e) => e.type), ['keeper-upgrade', 'keeper-upgraded']);
    // the upgrade goes on under the new keeper: v2 switched, then the host rolled back to A
    await client.request(agent.upgradeSwitch, { vms: ['v2'] });
    st = await client.request(agent.upgradeAbort, {});
    assert.deepEqual([st.state, st.active?.gen], ['idle', A]);
    assert.ok(st.vms.every((v) => v.serving === A && v.connected), JSON.stringify(st.vms));
    await sleep(300);
    const after = await probeStats();
    const lost = measured(after).reduce((n, f) => n + f.missing, 0) - measured(before).reduce((n, f) => n + f.missing, 0);
    assert.equal(lost, 0, `frames missing since the keeper upgrade: ${JSON.stringify(measured(after).map((f) => [f.src, f.dst, f.received, f.missing]))}`);
    assert.deepEqual(links().filter((e) => !e.data.up), [], 'no frontend saw its link go down');
    console.log(`systemd host: keeper upgrade paused control ${((up.pause_us ?? 0) / 1000).toFixed(1)} ms; main pid ${from} -> ${up.pid}`);
  });

  test('a keeper killed by SIGKILL: systemd restarts the unit, the agent restores every session, each frontend sees its link go down and up once, traffic flows again', async () => {
    const killed = await mainPid();
    const downsBefore = links().length;
    await host.must('systemctl', ['kill', '--signal=SIGKILL', UNIT]);
    const deadline = Date.now() + 30000;
    for (; ; await sleep(50)) {
      const now = await mainPid();
      if (now !== 0 && now !== killed && (await host.property(UNIT, 'ActiveState')) === 'active') break;
      assert.ok(Date.now() < deadline, `systemd did not restart ${UNIT}: ${await host.property(UNIT, 'ActiveState')}`);
    }
    assert.equal(await host.property(UNIT, 'NRestarts'), '1');
    while (!(await journal()).some((e) => e.type === 'keeper-restored')) {
      assert.ok(Date.now() < deadline, `no keeper-restored in the journal\n${agentErr.slice(-2000)}`);
      await sleep(50);
    }
    while (links().slice(downsBefore).filter((e) => e.data.up).length < 2) {
      assert.ok(Date.now() < deadline, `the frontends did not come back: ${JSON.stringify(links().slice(downsBefore))}`);
      await sleep(20);
    }
    for (const vm of ['v1', 'v2']) assert.deepEqual(links().slice(downsBefore).filter((e) => e.data.vm === vm).map((e) => e.data.up), [false, true], vm);
    const st = await client.request(agent.upgradeStatus, {});
    assert.ok(st.vms.every((v) => v.connected), JSON.stringify(st.vms));
    const r0 = await received();
    await sleep(500);
    const r1 = await received();
    r1.forEach((n, i) => assert.ok(n > r0[i]! + 100, `flow ${i} flows again: ${r0[i]} -> ${n}`));
  });

  test('with --fdstore (HITLESS_KEEPER_OPTS in /etc/hitless/keeper.env): a keeper killed by SIGKILL comes back from systemd with every session, no frontend sees its link move, no frame is lost, and the agent has nothing to restore; after a keeper upgrade too', async () => {
    await host.must('sh', ['-c', 'echo HITLESS_KEEPER_OPTS=--fdstore > /etc/hitless/keeper.env']);
    // turning it on restarts the keeper once: a stop, a flap, the agent restores
    const restoredBefore = (await journal()).filter((e) => e.type === 'keeper-restored').length;
    let linksBefore = links().length;
    const plain = await mainPid();
    await host.must('systemctl', ['restart', UNIT]);
    const deadline = Date.now() + 30000;
    while ((await mainPid()) === plain || (await journal()).filter((e) => e.type === 'keeper-restored').length === restoredBefore || links().slice(linksBefore).filter((e) => e.data.up).length < 2) {
      assert.ok(Date.now() < deadline, `the agent did not restore the keeper restarted with --fdstore\n${agentErr.slice(-2000)}`);
      await sleep(50);
    }
    assert.match(await host.must('sh', ['-c', `tr '\\0' ' ' < /proc/${await mainPid()}/cmdline`]), /--fdstore/);
    const killAndWait = async (what: string) => {
      await sleep(500); // the store written (the keeper looks every 100 ms)
      const stored = Number(await host.property(UNIT, 'NFileDescriptorStore'));
      assert.ok(stored > 10, `${what}: ${stored} fds in systemd's store`);
      // (this test starts the unit more often than systemd's start limit allows in 10 s: its
      // count cleared, as an operator would after testing a crash)
      await host.must('systemctl', ['reset-failed', UNIT]);
      const killed = await mainPid();
      const restarts = Number(await host.property(UNIT, 'NRestarts'));
      const lostBefore = (await journal()).filter((e) => e.type === 'keeper-lost').length;
      assert.equal((await journal()).filter((e) => e.type === 'keeper-restored').length, lostBefore, 'every loss restored so far');
      const missingBefore = measured(await probeStats()).map((f) => f.missing);
      linksBefore = links().length;
      await host.must('systemctl', ['kill', '--signal=SIGKILL', UNIT]);
      for (; ; await sleep(50)) {
        const now = await mainPid();
        if (now !== 0 && now !== killed && (await host.property(UNIT, 'ActiveState')) === 'active') break;
        assert.ok(Date.now() < deadline, `${what}: systemd did not restart ${UNIT}`);
      }
      assert.equal(Number(await host.property(UNIT, 'NRestarts')), restarts + 1, `${what}: ${await host.must('journalctl', ['-u', UNIT, '--no-pager', '-n', '30'])}`);
      assert.match(await host.property(UNIT, 'StatusText'), /taken back from systemd's fd store/, what);
      await sleep(1500);
      assert.deepEqual(links().slice(linksBefore), [], `${what}: no frontend saw its link move`);
      assert.deepEqual(measured(await probeStats()).map((f) => f.missing), missingBefore, `${what}: no frame missing`);
      // the agent may have seen the keeper gone for the second before systemd started it
      // again: if so, its restore found every generation and session already held
      for (;;) {
        const k = (await journal()).filter((e) => e.type === 'keeper-lost' || e.type === 'keeper-restored').slice(lostBefore * 2);
        if (k.length === 0) break;
        if (k.at(-1)!.type === 'keeper-restored') {
          assert.deepEqual(k.at(-1)!.down, [], `${what}: ${JSON.stringify(k)}`);
          break;
        }
        assert.ok(Date.now() < deadline, `${what}: the agent's restore did not finish\n${(await host.run('sh', ['-c', `for t in /proc/$(cat ${RUN}/keeper/keeper.pid)/task/*; do echo $t $(cat $t/comm) $(cat $t/wchan) $(cut -d' ' -f1-3 $t/syscall); cat $t/stack 2>/dev/null | head -5; done`])).stdout}\n${agentErr.slice(-1500)}\n${await host.must('journalctl', ['-u', UNIT, '--no-pager', '-n', '25'])}\nkeeper sessions: ${await CtlClient.connect(join(run, 'keeper', 'ctl.sock'), 2000).then(async (c) => { try { return JSON.stringify(await Promise.race([c.request(keeperCmd.sessionList, {}), sleep(2000).then(() => 'no answer in 2 s')])); } finally { c.close(); } }, (e: Error) => e.message)}`);
        await sleep(50);
      }
      const st = await client.request(agent.upgradeStatus, {});
      assert.ok(st.vms.every((v) => v.connected), JSON.stringify(st.vms));
      const r0 = await received();
      await sleep(300);
      (await received()).forEach((n, i) => assert.ok(n > r0[i]! + 100, `${what}: flow ${i} flows`));
    };
    await killAndWait('the first kill');
    // mid-upgrade: a switch under the restored keeper, then a keeper upgrade hands the store on
    let st = await client.request(agent.upgradePrepare, { release: '1.1.0' });
    const B = st.target!.gen;
    await client.request(agent.upgradeSwitch, { vms: ['v1'] });
    const up = await client.request(agent.keeperUpgrade, {});
    assert.equal(await mainPid(), up.pid);
    await killAndWait('a kill after a keeper upgrade');
    st = await client.request(agent.upgradeStatus, {});
    assert.equal(st.vms.find((v) => v.vm === 'v1')?.serving, B, 'v1 still where the switch put it');
    await client.request(agent.upgradeSwitch, { vms: ['v2'] });
    st = await client.request(agent.upgradeCommit, {});
    assert.deepEqual([st.state, st.active?.gen], ['idle', B]);
  });
});
