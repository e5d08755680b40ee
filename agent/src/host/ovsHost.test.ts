// Integration tests of the agent on an OVS-DPDK host (DESIGN §12): releases whose manifests say
// ovs-dpdk run as stock ovs-vswitchd generations (each with its own ovsdb-server, namespace and
// hugepages) behind the keeper, driven by the same upgrade state machine as hitless-dp. Real
// agent on stdio, keeper, Debian's ovs-vswitchd and probe VMs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { agent, events } from '../../../protocol/agent.js';
import { gapsOf, measured, probe as probeCmds } from '../../../protocol/native/probe.js';
import { Ovs, ovsAvailable } from '../native/ovs.js';
import { agentsOn, frontendSocket, hostRoot, OVS_VSWITCHD, probeOn } from '../../../testing/agentHost.js';
import { labVms, Testbed } from '../../../testing/testbed.js';
import { ovsLink } from './discover.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NR = '/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages';
const hugepages = () => Number(readFileSync(NR, 'utf8').trim());

/** What the cloud's tooling runs on an OVS host (os-vif's ovs-vsctl, a controller's ovs-ofctl),
 * pointed at the host's OVS by OVS_RUNDIR=<root>/run/ovs, as Hitless documents it. */
function cloud(root: string, cmd: 'ovs-vsctl' | 'ovs-ofctl', ...args: string[]): string {
  return execFileSync(cmd, args, { env: { ...process.env, OVS_RUNDIR: ovsLink(root) }, encoding: 'utf8' });
}

/** Nova plugging a VM whose QEMU is the vhost-user server (server=on), then its controller
 * giving it the host's L2 flows (as splitL2 does for the listed VMs). */
function plug(root: string, vm: { name: string; mac: string }): number {
  cloud(root, 'ovs-vsctl', 'add-port', 'br0', vm.name, '--', 'set', 'Interface', vm.name, 'type=dpdkvhostuserclient',
    `options:vhost-server-path=${frontendSocket(root, vm.name)}`, `external_ids:attached-mac=${vm.mac}`, `external_ids:iface-id=${vm.name}-uuid`,
    // a Neutron OVS agent's local VLAN (with explicit flows it changes no forwarding here)
    '--', 'set', 'Port', vm.name, 'tag=7', 'external_ids:neutron=x');
  const port = cloud(root, 'ovs-vsctl', 'get', 'Interface', vm.name, 'ofport').trim();
  cloud(root, 'ovs-ofctl', '-O', 'OpenFlow13', 'add-group', 'br0', `group_id=${port},type=ff,bucket=watch_port:${port},output:${port},bucket=watch_port:100,output:100`);
  cloud(root, 'ovs-ofctl', '-O', 'OpenFlow13', 'add-flow', 'br0', `priority=20,in_port=100,dl_dst=${vm.mac},actions=output:${port}`);
  cloud(root, 'ovs-ofctl', '-O', 'OpenFlow13', 'add-flow', 'br0', `priority=10,dl_dst=${vm.mac},actions=group:${port}`);
  return Number(port);
}

describe('hitless-agent on an OVS-DPDK host', () => {
  const bed = new Testbed('ovsagent');
  const { spawn: spawnAgent, cleanup } = agentsOn(bed);
  after(cleanup);

  test('OVS-DPDK is installed', () => assert.equal(ovsAvailable(), null));

  test('a release of an unknown datapath kind is refused before anything starts, naming the kind', async () => {
    const root = hostRoot(bed, 'ok1', 1, false, { ovs: true });
    const manifest = join(root, 'releases', '1.1.0', 'release.json');
    writeFileSync(manifest, JSON.stringify({ ...JSON.parse(readFileSync(manifest, 'utf8')), kind: 'vpp' }));
    const a = spawnAgent(root);
    await assert.rejects(a.client.request(agent.hostStart, { release: '1.1.0' }), /release 1\.1\.0 cannot run here: .*kind: unknown datapath kind "vpp" \(this agent runs hitless-dp, ovs-dpdk\)/);
    assert.equal(existsSync(join(root, 'run', 'gen-1.1.0-1')), false, 'no generation was started');
    const { releases } = await a.client.request(agent.releaseList, {});
    assert.match(releases.find((r) => r.version === '1.1.0')!.manifest_error!, /unknown datapath kind "vpp"/);
  });

  test("a release whose ovs-vswitchd fails to start: prepare says why, the host stays on 1.0.0 with its VMs forwarding and nothing of the target left; with a working binary the next prepare succeeds, and its hitless-hold's death shows in the host's health", async () => {
    const root = hostRoot(bed, 'ob1', 2, false, { ovs: true });
    const a = spawnAgent(root);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const probe = await probeOn(bed, root, 'ob1', 2);
    await sleep(500);
    const before = hugepages();
    const bin = join(root, 'releases', '1.1.0', 'bin', 'ovs-vswitchd');
    rmSync(bin);
    writeFileSync(bin, '#!/bin/sh\necho "ovs-vswitchd: a broken build" >&2\nexit 1\n', { mode: 0o755 });
    let failed = '';
    await assert.rejects(a.client.request(agent.upgradePrepare, { release: '1.1.0' }), (e: Error) => {
      assert.match(e.message, /ob1: 1\.1\.0 \(generation 1\.1\.0-\d+\) could not be started beside 1\.0\.0-1: .*a broken build.*; the host stays on 1\.0\.0, its VMs untouched/);
      failed = /generation (1\.1\.0-\d+)/.exec(e.message)![1]!;
      return true;
    });
    const st = await a.client.request(agent.upgradeStatus, {});
    assert.deepEqual([st.state, st.active?.gen, st.target, st.last_outcome], ['idle', '1.0.0-1', null, 'aborted']);
    assert.match(st.error ?? '', /prepare of 1\.1\.0: .*a broken build/);
    assert.ok(st.vms.every((v) => v.connected && v.serving === '1.0.0-1'), JSON.stringify(st.vms));
    assert.equal(hugepages(), before, "the target's hugepages were given back");
    assert.equal(existsSync(`/run/netns/${Ovs.at(join(root, 'run', `gen-${failed}`)).netns}`), false, "the target's namespace is gone");
    const rx = (await Ovs.at(join(root, 'run', 'gen-1.0.0-1')).portStats('v1')).rx;
    await sleep(500);
    assert.ok((await Ovs.at(join(root, 'run', 'gen-1.0.0-1')).portStats('v1')).rx > rx + 500, 'v1 still forwards through 1.0.0');

    rmSync(bin);
    symlinkSync(OVS_VSWITCHD, bin);
    const ok = await a.client.request(agent.upgradePrepare, { release: '1.1.0' });
    assert.deepEqual([ok.state, ok.target?.release, ok.error], ['switching', '1.1.0', null]);
    // the target's hitless-hold gone: the host's health says so (a switch to it would not hold)
    const problems: string[][] = [];
    a.client.on(events.health, (p) => problems.push(p.problems));
    process.kill(Number(readFileSync(join(root, 'run', `gen-${ok.target!.gen}`, 'hold.pid'), 'utf8').trim()), 'SIGKILL');
    for (const t = Date.now(); !problems.some((p) => p.some((x) => /hitless-hold is not running/.test(x))); await sleep(200)) assert.ok(Date.now() - t < 6000, `no health event named the dead hitless-hold: ${JSON.stringify(problems.slice(-2))}`);
    assert.ok(problems.at(-1)!.includes(`generation ${ok.target!.gen}: its hitless-hold is not running: a VM moved to it would switch without its frames held, and what is sent to the VM meanwhile would be lost`));
    await a.client.request(agent.upgradeAbort, {});
    const sum = await probe.stop();
    assert.deepEqual(probe.events.filter((e) => e.event === 'link'), [], 'no frontend saw its link move');
    assert.equal(sum.totals.dup, 0);
    // (not yet 0 lost: ~100 frames of one flow go missing around the prepare and abort of an OVS
    // target, in no receive gap over 1 ms; issue 15 is open on it)
    console.log(`agent on OVS-DPDK, a failed prepare, a prepare and an abort: lost ${sum.totals.lost} of ${sum.totals.offered}`);
  });

  test('4 VMs upgraded one by one from one OVS-DPDK generation to another, one rolled back, the keeper replaced, and that VM moved again, then committed: 0 frames lost (held through each switch), the frontends see nothing, the new generation forwards with the flows carried over, nothing is duplicated or left broken, and the old generation gives its hugepages back', async () => {
    const baseline = hugepages();
    const root = hostRoot(bed, 'ov1', 4, false, { ovs: true });
    const a = spawnAgent(root);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const probe = await probeOn(bed, root, 'ov1', 4);
    await sleep(1000);
    // an operator's meter and a flow metered by it (frames of an unused ethertype) on the running
    // generation: carried too, meters before the flows that use them
    const a0 = Ovs.at(join(root, 'run', `gen-${(await a.client.request(agent.upgradeStatus, {})).active!.gen}`));
    await a0.ofctl('-O', 'OpenFlow13', 'add-meter', 'br0', 'meter=7,pktps,stats,band=type=drop,rate=1000');
    await a0.ofctl('-O', 'OpenFlow13', 'add-flow', 'br0', 'priority=2,dl_type=0x88b5,actions=meter:7');

    const plan = await a.client.request(agent.upgradePlan, { release: '1.1.0' });
    assert.equal(plan.recommended, 'handoff');
    assert.match(plan.modes.find((m) => m.mode === 'swap')!.reason, /OVS-DPDK generation has no such stage/);

    // the VMs' own count of frames that never arrived (sequence holes), before and after
    const missing = async () => {
      await sleep(300);
      return measured(await probe.ctl!.request(probeCmds.statsShow, {})).map((f) => `${f.src}>${f.dst}: ${f.missing}`);
    };
    const before = await missing();
    let st = await a.client.request(agent.upgradePrepare, { release: '1.1.0' });
    const [A, B] = [st.active!.gen, st.target!.gen];
    assert.deepEqual([st.active!.kind, st.target!.kind, st.standby], ['ovs-dpdk', 'ovs-dpdk', B]);
    const [oa, ob] = [Ovs.at(join(root, 'run', `gen-${A}`)), Ovs.at(join(root, 'run', `gen-${B}`))];
    assert.notEqual(oa.netns, ob.netns, 'each generation has a namespace of its own');
    // the OpenFlow state (per-VM fast-failover groups and their flows) carried to B before any switch
    assert.deepEqual(await ob.exportState(), await oa.exportState());
    assert.match((await ob.exportState()).groups, /type=ff/);
    assert.deepEqual((await ob.exportState()).meters, ['meter=7,pktps,stats,band=type=drop,rate=1000']);
    assert.match((await ob.exportState()).flows, /dl_type=0x88b5 actions=meter:7/);

    const ms = [];
    for (const vm of ['v1', 'v2', 'v3', 'v4']) ms.push((await a.client.request(agent.upgradeSwitch, { vms: [vm] })).vms.find((v) => v.vm === vm)!.measurement!);
    assert.deepEqual(ms.map((m) => [m.vm, m.from, m.to]), ['v1', 'v2', 'v3', 'v4'].map((v) => [v, A, B]));
    // each switch measured by the VMs' own sequence accounting: nothing lost (held through the
    // switch by B's hold port, not dropped at a stopped port), and by the generations' own drop
    // counters (a port whose device stopped has none: nothing, not all ones)
    assert.deepEqual(ms.map((m) => [m.vm, m.lost_basis, m.lost, m.dropped]), ['v1', 'v2', 'v3', 'v4'].map((v) => [v, 'witness', 0, 0]), JSON.stringify(ms.map((m) => m.witness)));
    // nothing of the switches' own flows is carried or compared: the generations still agree
    assert.deepEqual((await ob.exportState()).flows, (await oa.exportState()).flows);
    const rx = (await ob.portStats('v1')).rx;
    await sleep(500);
    assert.ok((await ob.portStats('v1')).rx > rx + 1000, "v1's frames go through B's ovs-vswitchd");

    await a.client.request(agent.upgradeRollback, { vms: ['v4'] });
    st = await a.client.request(agent.upgradeStatus, {});
    assert.equal(st.vms.find((v) => v.vm === 'v4')!.serving, A);
    // the keeper replaced mid-upgrade: OVS's ports into it (and its pace ports) carried over,
    // so the next switch, to B, is held and paced as before
    const ku = await a.client.request(agent.keeperUpgrade, {});
    assert.deepEqual([ku.sessions, ku.vms], [4, 4]);
    const m4 = (await a.client.request(agent.upgradeSwitch, { vms: ['v4'] })).vms.find((v) => v.vm === 'v4')!.measurement!;
    assert.deepEqual([m4.from, m4.to, m4.lost_basis, m4.lost, m4.dropped], [A, B, 'witness', 0, 0], 'the switch after the keeper upgrade lost nothing');
    await sleep(500);
    st = await a.client.request(agent.upgradeCommit, {});
    assert.deepEqual([st.state, st.active?.gen, st.active?.kind, st.target], ['idle', B, 'ovs-dpdk', null]);
    // the upgrade as a whole is counted too (DESIGN §10), beside the VMs' own count. Not asserted
    // 0: under a busy loop beside it, a rollback or the commit lost frames here (163 on one flow)
    // where the four switches above lost none; the closing note of stop 26 says so
    const after = await missing();
    assert.deepEqual([st.loss?.outcome, st.loss?.vms], ['committed', 4], 'the upgrade as a whole was counted');
    console.log(`agent on OVS-DPDK, whole upgrade: lost ${st.loss?.lost} by the witness; VMs' missing before ${before.join(', ')}; after ${after.join(', ')}`);
    // and B forwards by the controller's flows alone again
    assert.doesNotMatch(await ob.ofctl('dump-flows', 'br0'), /cookie=0x486c64/);
    assert.ok(st.vms.every((v) => v.connected && v.serving === B), JSON.stringify(st.vms));
    assert.equal(oa.pid(), null, "A's ovs-vswitchd stopped");
    assert.equal(existsSync(`/run/netns/${oa.netns}`), false, "A's namespace removed");

    await sleep(500);
    const sum = await probe.stop();
    assert.deepEqual(probe.events.filter((e) => e.event === 'link'), [], 'no frontend saw its link move');
    assert.equal(sum.totals.dup, 0);
    for (const f of measured(sum)) assert.ok(!f.gaps.some((g) => g.open === true), `${f.src}->${f.dst} was left broken (lost ${f.lost})`);
    // only B's hugepages are still reserved
    assert.equal(hugepages() - baseline, Number(JSON.parse(readFileSync(join(root, 'run', `gen-${B}`, 'hugepages.json'), 'utf8')).pages));
    const lossy = gapsOf(probe.events).filter((g) => g.lost_in_gap > 0);
    console.log(`agent on OVS-DPDK: 6 handoffs, lost ${sum.totals.lost} of ${sum.totals.offered}; ${lossy.length} lossy receive gaps; keeper windows ${ms.map((m) => Math.round(m.window_us)).join(', ')} us`);
  });

  test("VMs are found in the OVS DB, not listed: one plugged before the upgrade and one plugged during it are put behind the keeper and move like the others, one unplugged is let go everywhere, and a port that cannot be taken is named and holds the commit back", async () => {
    const root = hostRoot(bed, 'of1', 2, false, { ovs: true });
    const a = spawnAgent(root);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const probe = await probeOn(bed, root, 'of1', 2);
    // four VMs the config does not list, their QEMU-like frontends the vhost-user servers (a
    // probe is up once each of its VMs is: each is awaited after its VMs are plugged)
    const [v3, v4, v5, v6] = labVms(6).slice(2) as { name: string; mac: string }[];
    mkdirSync(join(root, 'vms'));
    const lateProbe = (name: string, vms: { name: string; mac: string }[], flows: { src: string; dst: string; pps: number }[]) =>
      bed.probe({ name, vms: vms.map((v) => ({ ...v, socket: frontendSocket(root, v.name), server: true })), flows, durationS: 3600, ctlPath: join(root, 'run', `${name}.sock`) });
    const lateA = lateProbe('of1a', [v3!, v4!], [{ src: 'v3', dst: 'v4', pps: 2000 }, { src: 'v4', dst: 'v3', pps: 2000 }]);
    const status = () => a.client.request(agent.upgradeStatus, {});
    const until = async (what: string, ok: (s: Awaited<ReturnType<typeof status>>) => boolean) => {
      const deadline = Date.now() + 20000;
      for (;;) {
        const s = await status();
        if (ok(s)) return s;
        assert.ok(Date.now() < deadline, `${what}: ${JSON.stringify({ vms: s.vms, unmanaged: s.unmanaged })} ${a.stderr().slice(-1000)}`);
        await sleep(200);
      }
    };
    let st = await status();
    const A = st.active!.gen;
    assert.equal(readlinkSync(ovsLink(root)), join(root, 'run', `gen-${A}`), '<root>/run/ovs leads to the active generation');
    const late5 = lateProbe('of1b', [v5!], []);
    const v3port = plug(root, v3!);
    cloud(root, 'ovs-ofctl', '-O', 'OpenFlow13', 'add-group', 'br0', 'group_id=77,type=all,bucket=output:100');
    for (const v of [v4!, v5!]) plug(root, v);
    const [pa, p5] = [await lateA, await late5];
    // a port without the VM's MAC: not taken, and said so
    cloud(root, 'ovs-vsctl', 'add-port', 'br0', 'nomac', '--', 'set', 'Interface', 'nomac', 'type=dpdkvhostuserclient', `options:vhost-server-path=${frontendSocket(root, 'nomac')}`);
    // one the keeper refuses (its socket's path is too long for a unix socket address): tried
    // once, put back as it was, named with the keeper's reason, and not tried again
    const longSock = join(root, 'vms', 'x'.repeat(100), 'lp.sock');
    mkdirSync(dirname(longSock));
    writeFileSync(longSock, '');
    cloud(root, 'ovs-vsctl', 'add-port', 'br0', 'lp', '--', 'set', 'Interface', 'lp', 'type=dpdkvhostuserclient', `options:vhost-server-path=${longSock}`, 'external_ids:attached-mac=02:00:00:00:00:77');
    // (status carries the last complete look's unmanaged ports: one taken meanwhile may still be named)
    st = await until('v3, v4 and v5 found and connected, lp and nomac left out', (s) => ['v3', 'v4', 'v5'].every((vm) => s.vms.some((v) => v.vm === vm && v.connected && v.serving === A)) && s.unmanaged.map((u) => u.port).join() === 'lp,nomac');
    assert.match(st.unmanaged[0]!.why, /^it could not be put behind the keeper: .*path longer than \d+ bytes/);
    assert.deepEqual(st.unmanaged[1], { port: 'nomac', why: "it has no external_ids:attached-mac (the VM's MAC, announced after every move)" });
    const oa = Ovs.at(join(root, 'run', `gen-${A}`));
    assert.equal((await oa.vhostPorts()).find((p) => p.name === 'lp')!.path, longSock, "lp's port is as the cloud plugged it");
    await sleep(4500);
    const tries = readFileSync(join(root, 'var', 'journal.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"vm":"lp"'));
    assert.deepEqual(tries.map((l) => (JSON.parse(l) as { type: string }).type), ['vm-found', 'vm-gone'], 'lp was tried once, not again at every look');
    // the cloud plugs lp again alike (deleted and added in one transaction): tried once more
    cloud(root, 'ovs-vsctl', 'del-port', 'br0', 'lp', '--', 'add-port', 'br0', 'lp', '--', 'set', 'Interface', 'lp', 'type=dpdkvhostuserclient', `options:vhost-server-path=${longSock}`, 'external_ids:attached-mac=02:00:00:00:00:77');
    const lpTries = () => readFileSync(join(root, 'var', 'journal.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"vm":"lp"')).length;
    for (const t = Date.now(); lpTries() < 4; await sleep(200)) assert.ok(Date.now() - t < 20000, 'lp plugged again was not tried again');
    await sleep(5500);
    assert.equal(lpTries(), 4, 'lp plugged again was tried once more, and only once');
    const p3 = (await oa.vhostPorts()).find((p) => p.name === 'v3')!;
    assert.deepEqual([p3.path, p3.ofport, p3.external_ids['iface-id'], p3.port.tag, p3.port.external_ids.neutron], [join(root, 'run', `gen-${A}`, 'vhost', 'v3.sock'), v3port, 'v3-uuid', 7, 'x'], "v3's port leads to the keeper now, its number, VLAN tag and the cloud's ids unchanged");

    st = await a.client.request(agent.upgradePrepare, { release: '1.1.0' });
    const B = st.target!.gen;
    const ob = Ovs.at(join(root, 'run', `gen-${B}`));
    assert.deepEqual((await ob.vhostPorts()).map((p) => p.name).sort(), ['v1', 'v2', 'v3', 'v4', 'v5'], 'the target serves every VM found, and not the port that was not taken');
    assert.deepEqual(await ob.exportState(), await oa.exportState(), "the controller's flows for the VMs found carried");
    const b3 = (await ob.vhostPorts()).find((p) => p.name === 'v3')!;
    assert.deepEqual([b3.external_ids['iface-id'], b3.port.tag], ['v3-uuid', 7], "the cloud's ids and VLAN tag on v3's port carried (OVN binds a port by its iface-id)");

    // during the upgrade: the controller adds a flow and changes a group on A, v6 is plugged
    // (into A, where <root>/run/ovs still leads), v5 unplugged
    cloud(root, 'ovs-ofctl', '-O', 'OpenFlow13', 'add-flow', 'br0', 'priority=3,dl_type=0x88b6,actions=drop');
    cloud(root, 'ovs-ofctl', '-O', 'OpenFlow13', 'mod-group', 'br0', 'group_id=77,type=indirect,bucket=output:100');
    const late6 = lateProbe('of1c', [v6!], []);
    plug(root, v6!);
    const p6 = await late6;
    st = await until('v6 found', (s) => s.vms.some((v) => v.vm === 'v6' && v.connected && v.serving === A));
    cloud(root, 'ovs-vsctl', 'del-port', 'br0', 'v5');
    st = await until('v5 let go', (s) => !s.vms.some((v) => v.vm === 'v5'));
    // (the target follows within the same look, after the journal says so)
    for (const deadline = Date.now() + 20000; ; await sleep(200)) {
      const names = (await ob.vhostPorts()).map((p) => p.name);
      if (names.join() === 'v1,v2,v3,v4,v6') break;
      if (Date.now() > deadline) assert.deepEqual(names, ['v1', 'v2', 'v3', 'v4', 'v6'], 'v6 plugged into the target too, v5 gone from it');
    }
    await sleep(1000);
    const linkEvents = () => [...pa.events, ...p6.events].filter((e) => e.event === 'link').length;
    const links = linkEvents();

    await a.client.request(agent.upgradeSwitch, { vms: ['v1', 'v2', 'v3', 'v4'] });
    // the look before a switch brought the target's OpenFlow state level with the running one's
    assert.deepEqual(await ob.exportState(), await oa.exportState(), "v6's group and flows, and the controller's changes, carried to the target");
    assert.match((await ob.exportState()).groups, /group_id=77,type=indirect/);
    await assert.rejects(a.client.request(agent.upgradeCommit, {}), /not every VM is on .* yet: v6; and .*serves ports that are not behind the keeper.*: lp \(it could not be put .*\); nomac \(/);
    await a.client.request(agent.upgradeSwitch, { vms: ['v6'] });
    await assert.rejects(a.client.request(agent.upgradeCommit, {}), /ports that are not behind the keeper, which its stop would cut off: lp \(.*\); nomac \(it has no external_ids:attached-mac/);
    cloud(root, 'ovs-vsctl', 'del-port', 'br0', 'nomac', '--', 'del-port', 'br0', 'lp');
    st = await a.client.request(agent.upgradeCommit, {});
    assert.deepEqual([st.state, st.active?.gen, st.unmanaged], ['idle', B, []]);
    assert.deepEqual(st.vms.map((v) => [v.vm, v.connected, v.serving]), ['v1', 'v2', 'v3', 'v4', 'v6'].map((vm) => [vm, true, B]));
    assert.equal(readlinkSync(ovsLink(root)), ob.dir, '<root>/run/ovs leads to the new active generation');
    const rx = (await ob.portStats('v4')).rx;
    await sleep(500);
    assert.ok((await ob.portStats('v4')).rx > rx + 300, "v4's frames go through B");
    const journal = readFileSync(join(root, 'var', 'journal.jsonl'), 'utf8');
    assert.match(journal, /"type":"vm-gone","vm":"v5","why":"its port left [^"]+'s OVS DB"/);

    assert.equal(linkEvents(), links, 'the found VMs saw no link event once they were taken');

    // Nova plugs v3 again (a hard reboot: its port deleted and added back, leading to QEMU's
    // socket) in one transaction: taken again, on the generation that now serves it
    cloud(root, 'ovs-vsctl', 'del-port', 'br0', 'v3', '--', 'add-port', 'br0', 'v3', '--', 'set', 'Interface', 'v3', 'type=dpdkvhostuserclient',
      `options:vhost-server-path=${frontendSocket(root, 'v3')}`, `external_ids:attached-mac=${v3!.mac}`, 'external_ids:iface-id=v3-uuid');
    const keeperV3 = join(ob.dir, 'vhost', 'v3.sock');
    for (let t = Date.now(); (await ob.vhostPorts()).find((p) => p.name === 'v3')?.path !== keeperV3; await sleep(200))
      assert.ok(Date.now() - t < 20000, "v3's port was not led back to the keeper");
    st = await until('v3 connected again', (s) => s.vms.some((v) => v.vm === 'v3' && v.connected && v.serving === B));
    const rx3 = (await ob.portStats('v3')).rx;
    await sleep(1500);
    assert.ok((await ob.portStats('v3')).rx > rx3 + 300, "v3's frames go through B again");

    const [sum, lateSum] = [await probe.stop(), await pa.stop()];
    await p5.stop();
    await p6.stop();
    assert.deepEqual(probe.events.filter((e) => e.event === 'link'), [], 'the listed VMs saw no link event');
    assert.equal(sum.totals.dup + lateSum.totals.dup, 0);
  });

  test("kill -9 of the serving ovs-vswitchd mid-upgrade: every VM fails over to the standby without a link event, the agent restores an OVS-DPDK standby on its own, and the dead one's ovsdb-server, namespace and hugepages are cleaned up", async () => {
    const baseline = hugepages();
    const root = hostRoot(bed, 'od1', 2, false, { ovs: true });
    const a = spawnAgent(root);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const probe = await probeOn(bed, root, 'od1', 2);
    await sleep(1000);
    let st = await a.client.request(agent.upgradePrepare, { release: '1.1.0' });
    const [A, B] = [st.active!.gen, st.target!.gen];
    const oa = Ovs.at(join(root, 'run', `gen-${A}`));
    const ovsdbA = Number(readFileSync(join(oa.dir, 'ovsdb.pid'), 'utf8').trim());

    process.kill(oa.pid()!, 'SIGKILL');
    const deadline = Date.now() + 60000;
    for (;;) {
      st = await a.client.request(agent.upgradeStatus, {});
      if (st.failovers.length === 1 && st.failovers[0]!.restored !== null && st.standby !== null) break;
      assert.ok(Date.now() < deadline, `no standby restored: ${JSON.stringify(st.failovers)} ${a.stderr().slice(-1500)}`);
      await sleep(200);
    }
    const f = st.failovers[0]!;
    assert.deepEqual(f.moved.map((m) => `${m.vm}>${m.to}`).sort(), [`v1>${B}`, `v2>${B}`]);
    const A2 = f.restored!.gen;
    assert.deepEqual([st.active?.gen, st.active?.kind, st.standby, st.exposed], [A2, 'ovs-dpdk', A2, null], 'an OVS-DPDK 1.0.0 replacement is the standby');
    assert.ok(Ovs.at(join(root, 'run', `gen-${A2}`)).pid() !== null, 'the replacement runs ovs-vswitchd');
    assert.equal(existsSync(`/proc/${ovsdbA}`), false, "the dead generation's ovsdb-server is stopped");
    assert.equal(existsSync(`/run/netns/${oa.netns}`), false, "the dead generation's namespace is removed");
    assert.equal(existsSync(join(oa.dir, 'hugepages.json')), false, "the dead generation's hugepages are given back");
    const rx = (await Ovs.at(join(root, 'run', `gen-${B}`)).portStats('v1')).rx;
    await sleep(500);
    assert.ok((await Ovs.at(join(root, 'run', `gen-${B}`)).portStats('v1')).rx > rx + 500, 'v1 forwards through B');
    const sum = await probe.stop();
    assert.deepEqual(probe.events.filter((e) => e.event === 'link'), [], 'no frontend saw its link move');
    assert.equal(sum.totals.dup, 0);
    console.log(`agent on OVS-DPDK, kill -9: lost ${sum.totals.lost}, worst gap ${Math.max(...measured(sum).map((x) => x.max_gap_us)) / 1000} ms; hugepages above baseline now ${hugepages() - baseline}`);
  });
});
