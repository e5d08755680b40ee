// Integration tests of hitless-keeper: live vhost-user handoff between two real hitless-dp
// generations (joined by their memif peer link) with hitless-probe VMs as stock frontends.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { dp } from '../../../protocol/native/dp.js';
import { ctl } from '../../../protocol/native/ctl.js';
import { keeper } from '../../../protocol/native/keeper.js';
import { measured, probe as probeCmd, type ProbeSummary } from '../../../protocol/native/probe.js';
import { assertLossOnlyStarved, datapathDrops, explainLoss, switchesOf } from '../../../testing/lossReport.js';
import { Testbed, labVms, type UpgradeHost } from '../../../testing/testbed.js';
import { nativeBin } from '../../../testing/procs.js';
import { CtlClient } from './ctlClient.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function linkEvents(h: UpgradeHost): unknown[] {
  return h.probe.events.filter((e) => e.event === 'link');
}

async function rxOf(h: UpgradeHost, vm: string): Promise<number> {
  const s = await h.probe.ctl!.request(probeCmd.statsShow, {});
  return s.vms[vm]!.rx;
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

describe('hitless-keeper handoff', () => {
  const bed = new Testbed('keeper');
  after(() => bed.cleanup());

  test('hands every VM A->B and back with traffic flowing: 0 lost, 0 duplicated, frontend sees nothing', async (tc) => {
    const h = await bed.upgradeHost({ vms: 4, pps: 5000, durationS: 8 });
    await sleep(1000);
    const before = await h.b.ctl.request(dp.statsShow, {});
    for (const vm of h.vms) {
      const r = await h.k.ctl.request(keeper.handoffStart, { vm, gen: 'B' });
      assert.equal(r.from, 'A');
      assert.equal(r.to, 'B');
      assert.ok(r.rings.length >= 2, 'both rings of the queue pair moved');
      const t = r.timing;
      assert.ok(t.quiesce_ns <= t.bases_ns && t.bases_ns <= t.replayed_ns && t.replayed_ns <= t.resumed_ns);
      assert.ok(t.window_ns < 100e6, `window ${t.window_ns / 1e3} us`);
    }
    await sleep(1500);
    // traffic now flows through B, not A
    const mid = await h.b.ctl.request(dp.statsShow, {});
    const aMid = await h.a.ctl.request(dp.statsShow, {});
    await sleep(500);
    const aLater = await h.a.ctl.request(dp.statsShow, {});
    for (const vm of h.vms) {
      assert.ok(mid.vms[vm]!.rx_pkts > before.vms[vm]!.rx_pkts + 5000, `${vm} forwarded by B`);
      assert.equal(aLater.vms[vm]!.rx_pkts, aMid.vms[vm]!.rx_pkts, `${vm} no longer forwarded by A`);
      // B mapped the pages of the guest's memory the guest had touched (its buffers, its
      // rings) when it got the memory table, not in its loop after the switch
      const pf = mid.vms[vm]!.prefault;
      assert.ok(pf && pf.done && pf.error === null && pf.pages > 0, `${vm}: guest memory mapped ahead on B: ${JSON.stringify(pf)}`);
    }
    assert.ok(mid.peer!.mapped_ahead_bytes > 0, 'the peer link\'s buffers mapped ahead on B');
    for (const vm of h.vms) await h.k.ctl.request(keeper.handoffStart, { vm, gen: 'A' });
    const drops = await Promise.all([h.a, h.b].map((g) => g.ctl.request(dp.statsShow, {})));
    const sum: ProbeSummary = await h.probe.summary;
    assertLossOnlyStarved(tc, sum, h.probe.events, drops, switchesOf(h.k.events));
    assert.equal(sum.totals.dup, 0);
    assert.ok(sum.totals.received >= 4 * 5000 * 8 * 0.9);
    assert.deepEqual(linkEvents(h), [], 'no link event at any frontend');
    const { sessions } = await h.k.ctl.request(keeper.sessionList, {});
    for (const s of sessions) {
      assert.equal(s.home, 'A');
      assert.equal(s.handoffs, 2);
      assert.equal(s.connects, 1, `${s.vm}: the frontend never reconnected`);
    }
    assert.equal(h.k.events.filter((e) => e.event === 'handoff/done').length, 8);
  });

  test('follows a guest renegotiation after a handoff, and releases every fd when the frontend goes', async () => {
    const h = await bed.upgradeHost({ vms: 2, pps: 5000, durationS: 30 });
    await sleep(500);
    await h.k.ctl.request(keeper.handoffStart, { vm: 'v1', gen: 'B' });
    const epoch0 = (await h.k.ctl.request(keeper.sessionShow, { vm: 'v1' })).state!.epoch;
    await h.probe.ctl!.request(probeCmd.vmReset, { vm: 'v1' });
    // the reset renegotiates inside the same connection: new memory table, rings, eventfds
    let s = await h.k.ctl.request(keeper.sessionShow, { vm: 'v1' });
    for (let i = 0; i < 50 && !(s.movable && s.state!.epoch > epoch0); i++) {
      await sleep(50);
      s = await h.k.ctl.request(keeper.sessionShow, { vm: 'v1' });
    }
    assert.ok(s.state!.epoch > epoch0, 'the keeper followed the renegotiation');
    assert.ok(s.movable, s.not_movable_because);
    assert.equal(s.serving, 'B');
    assert.equal(s.connects, 1);
    const rx0 = await rxOf(h, 'v1');
    await sleep(500);
    assert.ok((await rxOf(h, 'v1')) > rx0 + 1000, 'v1 receives again after its reset');
    // and it can move again with its new rings
    const r = await h.k.ctl.request(keeper.handoffStart, { vm: 'v1', gen: 'A' });
    assert.equal(r.to, 'A');
    const rx1 = await rxOf(h, 'v1');
    await sleep(500);
    assert.ok((await rxOf(h, 'v1')) > rx1 + 1000, 'v1 receives on A after the second handoff');
    assert.deepEqual(linkEvents(h), []);
    // the frontend leaves: the keeper keeps no guest memory or eventfd of it
    await h.probe.stop();
    for (let i = 0; i < 50 && (await h.k.ctl.request(keeper.sessionList, {})).sessions.some((x) => x.connected); i++) await sleep(50);
    for (const vm of ['v1', 'v2']) {
      const x = await h.k.ctl.request(keeper.sessionShow, { vm });
      assert.equal(x.connected, false);
      assert.equal(x.state!.fds_held, 0, `${vm} fds released`);
      assert.equal(x.state!.regions, 0);
    }
    assert.equal(fdCount(h.k.child.pid!), h.keeperIdleFds, 'keeper fd count back to what it was before the frontends came');
  });
});

describe('hitless-keeper session variants', () => {
  const bed = new Testbed('kvar');
  after(() => bed.cleanup());

  test('client mode: the keeper connects to frontend-owned sockets (QEMU server=on) and hands them over', async () => {
    const peer = `${bed.dir}/peer-c.sock`;
    const a = await bed.dp('A', { peer: { socket: peer, server: true } });
    const b = await bed.dp('B', { peer: { socket: peer, server: false } });
    const k = await bed.keeper('kc');
    await k.attach(a);
    await k.attach(b);
    const vms = labVms(2);
    await a.serve(vms);
    await b.serve(vms);
    const socks = vms.map((v) => `${bed.dir}/${v.name}.frontend.sock`);
    for (const [i, v] of vms.entries()) {
      const s = await k.ctl.request(keeper.vmAdd, { vm: v.name, gen: 'A', socket: socks[i]!, client: true });
      assert.equal(s.mode, 'client');
    }
    // the frontends come up after the keeper: it keeps trying until they are there
    const probe = await bed.probe({
      name: 'client',
      vms: vms.map((v, i) => ({ ...v, socket: socks[i]!, server: true })),
      flows: [
        { src: 'v1', dst: 'v2', pps: 5000 },
        { src: 'v2', dst: 'v1', pps: 5000 },
      ],
      durationS: 3,
    });
    await sleep(500);
    for (const v of vms) await k.ctl.request(keeper.handoffStart, { vm: v.name, gen: 'B' });
    const sum = await probe.summary;
    assert.equal(sum.totals.lost, 0, explainLoss(sum, probe.events, switchesOf(k.events)));
    assert.ok(sum.totals.received > 2 * 5000 * 3 * 0.8);
    assert.equal(probe.events.filter((e) => e.event === 'link' && !e.data.up).length, 0);
  });

  test('20 handoffs of a VM whose peer is on the other generation: nothing reordered, lost or duplicated', async (tc) => {
    const h = await bed.upgradeHost({ vms: 2, pps: 5000, durationS: 3600 });
    await sleep(300);
    const coServing = async () => (await h.k.ctl.request(keeper.genList, {})).gens.map((g) => [g.gen, g.loop_cpu, g.co_serving]);
    // both loops on CPU 1; only A serves VMs: neither has another serving beside it... A has
    // none, B (serving none) has A
    assert.deepEqual(await coServing(), [['A', 1, 0], ['B', 1, 1]]);
    await h.k.ctl.request(keeper.handoffStart, { vm: 'v2', gen: 'B' }); // the host is split
    // both serve VMs from CPU 1: they take turns on it in short slices
    assert.deepEqual(await coServing(), [['A', 1, 1], ['B', 1, 1]]);
    await sleep(300);
    for (let i = 0; i < 20; i++) {
      await h.k.ctl.request(keeper.handoffStart, { vm: 'v1', gen: i % 2 === 0 ? 'B' : 'A' });
      await sleep(100);
    }
    await sleep(300);
    const st = await Promise.all([h.a, h.b].map((g) => g.ctl.request(dp.statsShow, {})));
    const sum = await h.probe.stop();
    const why = `${explainLoss(sum, h.probe.events, switchesOf(h.k.events))}\n${datapathDrops(['A', 'B'], st)}`;
    assert.equal(sum.totals.reordered, 0, why);
    assertLossOnlyStarved(tc, sum, h.probe.events, st, switchesOf(h.k.events));
    assert.equal(sum.totals.dup, 0, why);
    const fences = st.reduce((n, s) => n + (s.vms.v1?.fences ?? 0), 0);
    assert.ok(fences >= 10, `v1's arrivals fenced the peer path (${fences})`);
    console.log(`split-host handoffs: fences ${fences}, released by the bound ${st.reduce((n, s) => n + (s.vms.v1?.fence_timeouts ?? 0), 0)}`);
  });

  test('packed virtqueues: handed over A->B->A with 0 lost; failover refuses and says why', async () => {
    const h = await bed.upgradeHost({ vms: 2, pps: 5000, durationS: 4, packed: true });
    const s = await h.k.ctl.request(keeper.sessionShow, { vm: 'v1' });
    assert.equal(s.state!.packed, true);
    await sleep(500);
    for (const gen of ['B', 'A']) for (const vm of h.vms) await h.k.ctl.request(keeper.handoffStart, { vm, gen });
    await sleep(500);
    h.a.child.kill('SIGKILL');
    const sum = await h.probe.summary;
    const failed = h.k.events.filter((e) => e.event === 'failover/failed');
    assert.deepEqual(failed.map((e) => (e.event === 'failover/failed' ? e.data.code : '')), ['packed-ring', 'packed-ring']);
    // before the kill, every frame arrived: the only lost frames are those after it
    // (a frame that arrived late filled its place again; what is still missing below the last
    // frame received is lost: after the kill nothing arrives, so the tail is not counted)
    const lostBeforeKill = measured(sum).reduce((n, f) => n + f.missing, 0);
    assert.equal(lostBeforeKill, 0, explainLoss(sum, h.probe.events, switchesOf(h.k.events)));
  });
});

describe('hitless-keeper, multi-queue guests', () => {
  const bed = new Testbed('keeper-mq');
  after(() => bed.cleanup());

  test('4 queue pairs per VM: every ring handed A->B->A with 0 lost on every queue; after kill -9 the standby serves every queue', async () => {
    const h = await bed.upgradeHost({ vms: 2, pps: 1000, durationS: 3600, queues: 4 });
    await sleep(500);
    for (const gen of ['B', 'A']) {
      for (const vm of h.vms) {
        const r = await h.k.ctl.request(keeper.handoffStart, { vm, gen });
        assert.equal(r.rings.length, 8, `${vm}: every ring of the 4 queue pairs moved: ${JSON.stringify(r.rings)}`);
      }
      await sleep(300);
    }
    await sleep(300);
    const perQueue = async () => {
      const s = await h.probe.ctl!.request(probeCmd.statsShow, {});
      return measured(s).map((f) => ({ flow: `${f.src}->${f.dst} q${f.txq}`, received: f.received, lost: f.lost - f.tx_refused, missing: f.missing }));
    };
    const handedOff = await perQueue();
    assert.deepEqual(handedOff.map((f) => f.flow).sort(), ['v1->v2 q0', 'v1->v2 q1', 'v1->v2 q2', 'v1->v2 q3', 'v2->v1 q0', 'v2->v1 q1', 'v2->v1 q2', 'v2->v1 q3']);
    for (const f of handedOff) {
      assert.ok(f.received > 1000, `${f.flow}: its queue is served (${f.received} received)`);
      assert.equal(f.missing, 0, `${f.flow} lost frames over 4 handoffs: ${JSON.stringify(handedOff)}`);
    }
    for (const vm of h.vms) await h.k.ctl.request(keeper.sessionPreload, { vm, gen: 'B' });
    h.a.child.kill('SIGKILL');
    const deadline = Date.now() + 20000;
    while (h.k.events.filter((e) => e.event === 'failover/done').length < 2) {
      assert.ok(Date.now() < deadline, `no failover: ${JSON.stringify(h.k.events.slice(-4))}`);
      await sleep(50);
    }
    await sleep(300);
    const before = await perQueue();
    await sleep(700);
    const later = await perQueue();
    for (const f of later) {
      const b = before.find((x) => x.flow === f.flow)!;
      assert.ok(f.received - b.received > 500, `${f.flow} flows on the standby: ${b.received} -> ${f.received}`);
    }
    await h.probe.stop();
  });
});

describe('hitless-keeper failures', () => {
  const bed = new Testbed('kfail');
  after(() => bed.cleanup());

  test('kill -9 of the serving generation: sessions fail over to the standby, the frontend never disconnects', async () => {
    const h = await bed.upgradeHost({ vms: 2, pps: 5000, durationS: 4, gapUs: 2000 });
    for (const vm of h.vms) await h.k.ctl.request(keeper.sessionPreload, { vm, gen: 'B' });
    // the keeper is woken by the kernel as the generation's packet loop exits: nothing polls
    const { gens } = await h.k.ctl.request(keeper.genList, {});
    assert.deepEqual(gens.map((g) => [g.gen, g.death_watch]), [['A', 'loop-exit'], ['B', 'loop-exit']]);
    await sleep(1000);
    h.a.child.kill('SIGKILL');
    const sum = await h.probe.summary;
    const failovers = h.k.events.filter((e) => e.event === 'failover/done');
    assert.deepEqual(failovers.map((e) => (e.event === 'failover/done' ? e.data.vm : '')).sort(), h.vms);
    const dead = h.k.events.find((e) => e.event === 'gen/dead');
    assert.ok(dead && dead.event === 'gen/dead' && dead.data.gen === 'A' && dead.data.moved === 2, JSON.stringify(dead));
    assert.equal(dead.data.cause, 'its packet loop exited and every thread is exiting');
    const { sessions } = await h.k.ctl.request(keeper.sessionList, {});
    for (const s of sessions) {
      assert.equal(s.home, 'B');
      assert.equal(s.failovers, 1);
      assert.equal(s.connects, 1, 'never reconnected');
    }
    assert.deepEqual(linkEvents(h), [], 'no link event at the frontends');
    // traffic resumed: every flow received most of its frames; the break is reported
    for (const f of measured(sum)) {
      assert.ok(f.received > f.offered * 0.8, `${f.src}->${f.dst} received ${f.received}/${f.offered}`);
      assert.ok(!f.gaps.some((g) => g.open === true), 'no flow was left broken');
    }
    const worst = Math.max(...measured(sum).map((f) => f.max_gap_us));
    console.log(`failover: cause "${dead.event === 'gen/dead' ? dead.data.cause : ''}", worst receive gap ${(worst / 1000).toFixed(1)} ms, lost ${sum.totals.lost}`);
  });

  test('kill -9 of the serving generation with 4 VMs talking, 10 runs: the survivor fences the peer link before the first session moves, holds frames for the VMs on their way, and the only frames lost are those inside the dead process, counted exactly', async () => {
    const runs: string[] = [];
    for (let run = 1; run <= 10; run++) {
      const h = await bed.upgradeHost({ vms: 4, pps: 5000, durationS: 3600, gapUs: 2000 });
      for (const vm of h.vms) await h.k.ctl.request(keeper.sessionPreload, { vm, gen: 'B' });
      await sleep(500);
      const before = await h.b.ctl.request(dp.statsShow, {});
      h.a.child.kill('SIGKILL');
      const deadline = Date.now() + 20000;
      while (!h.k.events.some((e) => e.event === 'gen/dead')) {
        assert.ok(Date.now() < deadline, 'A was not found dead');
        await sleep(20);
      }
      const ev = h.k.events.find((e) => e.event === 'gen/dead')!;
      assert.ok(ev.event === 'gen/dead');
      const dead = ev.data;
      assert.equal(dead.moved, 4, JSON.stringify(dead));
      assert.equal(dead.fenced, 1, 'the survivor was fenced');
      await sleep(500);
      const after = await h.b.ctl.request(dp.statsShow, {});
      assert.equal(after.peer?.fenced, true);
      assert.equal(after.peer!.tx_pkts, before.peer!.tx_pkts, 'nothing was sent into the dead generation');
      const drops = Object.entries(after.vms).flatMap(([vm, v]) => Object.entries(v.drops).filter(([, n]) => n > 0).map(([k, n]) => `${vm} ${k} ${n}`));
      assert.deepEqual(drops, [], 'the survivor dropped nothing: it held what waited for the moving VMs');
      const sum = await h.probe.stop();
      // lost = exactly the frames the dead process had taken and not let out (its heartbeat
      // page's counters, read by the keeper after the death): nothing was lost anywhere else
      assert.equal(sum.totals.lost, dead.lost_inside, `run ${run}: lost ${sum.totals.lost}, inside the dead generation ${dead.lost_inside}: ${explainLoss(sum, h.probe.events, switchesOf(h.k.events))}`);
      assert.equal(sum.totals.dup, 0);
      runs.push(`${dead.lost_inside}`);
      await bed.cleanupProcs();
    }
    console.log(`10 kills: frames lost inside the dead generation per run ${runs.join(' ')}; lost elsewhere 0 in every run`);
  });

  test('kill -9 with the VMs split across the generations (two on each, talking across the peer link), 5 runs: every frame lost is counted by the keeper, inside the dead process or in its peer link', async () => {
    const runs: string[] = [];
    for (let run = 1; run <= 5; run++) {
      const h = await bed.upgradeHost({ vms: 4, pps: 5000, durationS: 3600, gapUs: 2000 });
      for (const vm of ['v1', 'v2']) await h.k.ctl.request(keeper.handoffStart, { vm, gen: 'B' });
      for (const vm of ['v3', 'v4']) await h.k.ctl.request(keeper.sessionPreload, { vm, gen: 'B' });
      await sleep(500);
      h.a.child.kill('SIGKILL');
      for (const t = Date.now(); !h.k.events.some((e) => e.event === 'gen/dead'); await sleep(20)) assert.ok(Date.now() - t < 20000, 'A was not found dead');
      const ev = h.k.events.find((e) => e.event === 'gen/dead')!;
      assert.ok(ev.event === 'gen/dead' && ev.data.moved === 2, JSON.stringify(ev));
      await sleep(500);
      const sum = await h.probe.stop();
      assert.equal(sum.totals.lost, ev.data.lost_inside, `run ${run}: lost ${sum.totals.lost}, counted by the keeper ${ev.data.lost_inside} (of which in the link ${ev.data.lost_in_link}): ${explainLoss(sum, h.probe.events, switchesOf(h.k.events))}`);
      assert.equal(sum.totals.dup, 0);
      runs.push(`${ev.data.lost_inside} (link ${ev.data.lost_in_link})`);
      await bed.cleanupProcs();
    }
    console.log(`split kills: frames lost per run ${runs.join(', ')}; each counted by the keeper`);
  });

  test('after a failover the serving generation is no standby; a second crash with none takes the frontends\' links down, never a silent blackhole', async () => {
    const h = await bed.upgradeHost({ vms: 2, pps: 2000, durationS: 3600 });
    await sleep(500);
    h.a.child.kill('SIGKILL');
    const until = (pred: () => boolean, what: string) =>
      (async () => {
        const deadline = Date.now() + 20000;
        while (!pred()) {
          assert.ok(Date.now() < deadline, `${what}: ${JSON.stringify(h.k.events.slice(-6))}`);
          await sleep(20);
        }
      })();
    await until(() => h.k.events.filter((e) => e.event === 'failover/done').length === 2, 'both VMs failed over to B');
    const { gens } = await h.k.ctl.request(keeper.genList, {});
    assert.deepEqual(gens.filter((g) => !g.dead).map((g) => ({ gen: g.gen, standby: g.standby, serving: g.serving })), [{ gen: 'B', standby: false, serving: 2 }], 'B serves: the host has no standby');
    assert.deepEqual(linkEvents(h), [], 'the first crash was not seen by the frontends');
    const t0 = Date.now();
    h.b.child.kill('SIGKILL');
    await until(() => h.k.events.filter((e) => e.event === 'failover/failed').length === 2, 'failover/failed for both VMs');
    const failed = h.k.events.flatMap((e) => (e.event === 'failover/failed' ? [e.data.code] : []));
    assert.deepEqual(failed, ['no-standby', 'no-standby']);
    await until(() => h.probe.events.filter((e) => e.event === 'link' && !e.data.up).length === 2, 'the frontends see their links down');
    console.log(`second crash without a standby: both frontends saw link down ${Date.now() - t0} ms after the kill`);
    h.probe.kill();
  });

  test('a generation started after a crash joins the peer link of the one serving, and VMs split across them lose nothing', async () => {
    const h = await bed.upgradeHost({ vms: 2, pps: 2000, durationS: 3600 });
    await sleep(300);
    h.a.child.kill('SIGKILL');
    const deadline = Date.now() + 20000;
    while (h.k.events.filter((e) => e.event === 'failover/done').length < 2) {
      assert.ok(Date.now() < deadline, 'no failover');
      await sleep(20);
    }
    // the survivor drops its link to the dead one and offers a new one; the replacement joins it
    await h.b.ctl.request(dp.peerDetach, {});
    const peer = join(bed.dir, 'peer-again.sock');
    await h.b.ctl.request(dp.peerAttach, { socket: peer, server: true });
    const c = await bed.dp('C', { peer: { socket: peer, server: false } });
    await c.serve(labVms(2));
    await h.k.attach(c);
    await sleep(300);
    // frames gone before the split (what the crash took, if anything): missing below the newest
    const gone = measured(await h.probe.ctl!.request(probeCmd.statsShow, {})).reduce((n, f) => n + f.missing, 0);
    await h.k.ctl.request(keeper.handoffStart, { vm: 'v1', gen: 'C' }); // split: v1 on C, v2 on B
    await sleep(1000);
    const st = await Promise.all([h.b, c].map((g) => g.ctl.request(dp.statsShow, {})));
    assert.equal(st[0]!.peer?.fenced, false, 'the new link is not fenced');
    assert.ok(st[0]!.peer!.tx_pkts > 1000 && st[1]!.peer!.tx_pkts > 1000, `traffic crosses the new peer link: ${st[0]!.peer!.tx_pkts}, ${st[1]!.peer!.tx_pkts}`);
    const after = await h.probe.stop();
    const why = `${explainLoss(after, h.probe.events, switchesOf(h.k.events))}\n${datapathDrops(['B', 'C'], st)}`;
    assert.equal(after.totals.lost - gone, 0, why);
    assert.equal(after.totals.dup, 0, why);
  });

  test('kill -9 of the target mid-handoff: the VM returns to the old generation and keeps forwarding', async () => {
    const h = await bed.upgradeHost({ vms: 2, pps: 5000, durationS: 30 });
    await sleep(500);
    await h.k.ctl.request(keeper.debugHandoffPause, { ms: 400 });
    const pending = h.k.ctl.request(keeper.handoffStart, { vm: 'v1', gen: 'B' });
    await sleep(150); // v1's rings are stopped on A now; B is about to get them
    h.b.child.kill('SIGKILL');
    await assert.rejects(pending, (e: unknown) => e instanceof Error && /target-failed/.test(e.message) && /back on 'A'/.test(e.message));
    const s = await h.k.ctl.request(keeper.sessionShow, { vm: 'v1' });
    assert.equal(s.serving, 'A');
    assert.equal(s.connects, 1);
    const rx0 = await rxOf(h, 'v1');
    await sleep(500);
    assert.ok((await rxOf(h, 'v1')) > rx0 + 1000, 'v1 forwards again on A');
    assert.deepEqual(linkEvents(h), []);
  });
});

describe('hitless-keeper bad input', () => {
  const bed = new Testbed('kbad');
  after(() => bed.cleanup());

  // Each case is sent on its own connection to a VM socket; the keeper must cut that connection.
  const garbage = String.raw`
import socket, struct, sys, os, array
path, kind = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.connect(path); s.settimeout(3)
def hdr(req, flags, size): return struct.pack('<III', req, flags, size)
def fds(n): return [os.open('/dev/null', os.O_RDONLY) for _ in range(n)]
if kind == 'short': s.send(b'\x01\x00\x00')
elif kind == 'oversized': s.send(hdr(2, 1, 1 << 20) + b'\x00' * 64)
elif kind == 'fd-mismatch': s.sendmsg([hdr(5, 1, 8 + 32 * 2) + struct.pack('<II', 2, 0) + b'\x01' * 64], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds(1)))])
elif kind == 'wrong-size': s.send(hdr(8, 1, 3) + b'\x00\x00\x00')
elif kind == 'kick-without-fd': s.send(hdr(12, 1, 8) + struct.pack('<Q', 0))
elif kind == 'unknown-request': s.send(hdr(99, 1, 0))
elif kind == 'reply-flag': s.send(hdr(1, 5, 0))
elif kind == 'too-many-fds': s.sendmsg([hdr(1, 1, 0)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds(12)))])
elif kind == 'bad-ring': s.send(hdr(8, 1, 8) + struct.pack('<II', 200, 256))
elif kind == 'bad-ring-size': s.send(hdr(8, 1, 8) + struct.pack('<II', 0, 1000))
try:
    d = s.recv(64)
    print('closed' if d == b'' else 'answered')
except ConnectionResetError:
    print('closed')
except socket.timeout:
    print('timeout')
`;

  test('garbage on a frontend socket is refused by closing that connection; other VMs keep forwarding', async () => {
    // (the probe runs until stopped: ten python3 runs take seconds on a loaded machine)
    const h = await bed.upgradeHost({ vms: 2, pps: 5000, durationS: 3600 });
    // a third VM whose socket receives the garbage
    const [, , x] = labVms(3);
    await h.a.serve([x!]);
    const xs = (await h.k.ctl.request(keeper.vmAdd, { vm: x!.name, gen: 'A' })).socket;
    const kinds = ['short', 'oversized', 'fd-mismatch', 'wrong-size', 'kick-without-fd', 'unknown-request', 'reply-flag', 'too-many-fds', 'bad-ring', 'bad-ring-size'];
    for (const kind of kinds) {
      const out = execFileSync('python3', ['-c', garbage, xs, kind], { encoding: 'utf8' }).trim();
      assert.equal(out, 'closed', `${kind}: the keeper ${out} instead of closing`);
    }
    const sx = await h.k.ctl.request(keeper.sessionShow, { vm: x!.name });
    assert.ok(sx.refused >= kinds.length - 1, `refused ${sx.refused}`);
    assert.equal(sx.connected, false);
    assert.equal(sx.state!.fds_held, 0);
    // the keeper still answers and still moves the other VMs
    await h.k.ctl.request(keeper.handoffStart, { vm: 'v1', gen: 'B' });
    await new Promise((r) => setTimeout(r, 500));
    const sum = await h.probe.stop();
    assert.equal(sum.totals.lost, 0);
    assert.deepEqual(linkEvents(h), []);
  });

  // A minimal vhost-user frontend that negotiates dirty logging (VHOST_F_LOG_ALL, as QEMU does
  // during live migration) and starts one ring.
  const migrating = String.raw`
import socket, struct, sys, os, array, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)
def send(req, payload=b'', fds=()):
    m = struct.pack('<III', req, 1, len(payload)) + payload
    if fds: s.sendmsg([m], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))])
    else: s.sendall(m)
def recv():
    req, flags, size = struct.unpack('<III', s.recv(12))
    return s.recv(size) if size else b''
send(3)
send(1); offered = struct.unpack('<Q', recv())[0]
send(2, struct.pack('<Q', offered & ((1 << 26) | (1 << 32) | (1 << 15))))
mem = os.memfd_create('guest'); os.ftruncate(mem, 1 << 20)
ua = 0x7f0000000000
send(5, struct.pack('<II', 1, 0) + struct.pack('<QQQQ', 0x100000, 1 << 20, ua, 0), [mem])
send(8, struct.pack('<II', 0, 256))
send(9, struct.pack('<IIQQQQ', 0, 0, ua, ua + 0x4000, ua + 0x2000, 0))
send(13, struct.pack('<Q', 0), [os.eventfd(0)])
send(12, struct.pack('<Q', 0), [os.eventfd(0)])
print('ready', flush=True)
time.sleep(5)
`;

  test('refuses to move a session while dirty logging is on (live migration), leaving it untouched', async () => {
    const h = await bed.upgradeHost({ vms: 2, pps: 1000, durationS: 4 });
    const [, , x] = labVms(3);
    await h.a.serve([x!]);
    await h.b.serve([x!]);
    const xs = (await h.k.ctl.request(keeper.vmAdd, { vm: x!.name, gen: 'A' })).socket;
    const fe = spawn('python3', ['-c', migrating, xs], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((res, rej) => {
        fe.stdout.once('data', () => res());
        fe.once('exit', (c) => rej(new Error(`frontend exited ${c}`)));
      });
      let s = await h.k.ctl.request(keeper.sessionShow, { vm: x!.name });
      for (let i = 0; i < 20 && !s.state!.rings.some((r) => r.started); i++) {
        await sleep(50);
        s = await h.k.ctl.request(keeper.sessionShow, { vm: x!.name });
      }
      assert.equal(s.movable, false);
      assert.match(s.not_movable_because ?? '', /dirty logging/);
      await assert.rejects(h.k.ctl.request(keeper.handoffStart, { vm: x!.name, gen: 'B' }), /dirty logging.*\(not-movable\)/);
      await assert.rejects(h.k.ctl.request(keeper.sessionPreload, { vm: x!.name, gen: 'B' }), /not-movable/);
      const after = await h.k.ctl.request(keeper.sessionShow, { vm: x!.name });
      assert.equal(after.serving, 'A');
      assert.equal(after.connected, true);
    } finally {
      fe.kill();
    }
  });

  test('control socket: bad requests get errors naming the problem, and the command set matches', async () => {
    const k = await bed.keeper('k2');
    const { commands } = await k.ctl.request(keeper.listCommands, {});
    assert.deepEqual(commands.map((c) => c.name).sort(), [...Object.values(keeper).map((c) => c.method), ctl.eventsSubscribe.method].sort());
    const bad: [string, string][] = [
      ['{"id":1,"cmd":"gen/attach","args":{"gen":"Z","run_dir":"/nonexistent"}}', 'no-generation'],
      ['{"id":2,"cmd":"gen/attach","args":{"gen":"Z","run_dir":"relative"}}', 'invalid-args'],
      ['{"id":3,"cmd":"gen/attach","args":{"gen":"bad name","run_dir":"/tmp"}}', 'invalid-args'],
      ['{"id":4,"cmd":"vm/add","args":{"vm":"v1","gen":"nope"}}', 'unknown-gen'],
      ['{"id":5,"cmd":"handoff/start","args":{"vm":"nope","gen":"A"}}', 'unknown-vm'],
      ['{"id":6,"cmd":"session/show","args":{}}', 'invalid-args'],
      ['{"id":7,"cmd":"debug/handoff-pause","args":{"ms":99999}}', 'invalid-args'],
      ['{"id":8,"cmd":"failover/standby","args":{"gen":"nope"}}', 'unknown-gen'],
      ['not json', 'parse-error'],
    ];
    for (const [line, code] of bad) {
      const r = await k.ctl.sendRaw(line);
      assert.ok(!r.ok && r.error.code === code, `${line} -> ${JSON.stringify(r)}`);
    }
    // a VM that is not connected cannot be moved or pre-loaded
    const gen = await bed.dp('G');
    await k.attach(gen);
    await gen.serve(labVms(1));
    await k.ctl.request(keeper.vmAdd, { vm: 'v1', gen: 'G' });
    await assert.rejects(k.ctl.request(keeper.handoffStart, { vm: 'v1', gen: 'G' }), /not-connected/);
    await assert.rejects(k.ctl.request(keeper.vmAdd, { vm: 'v1', gen: 'G' }), /exists/);
    await assert.rejects(k.ctl.request(keeper.genDetach, { gen: 'G' }), /busy/);
    // a VM's MAC that is not one is refused by name, and no VM is added
    for (const mac of ['02:00:00:00:00', '02:00:00:00:00:zz', '02:00:00:00:00:01:ff', '']) {
      const r = await k.ctl.sendRaw(JSON.stringify({ id: 9, cmd: 'vm/add', args: { vm: 'v2', gen: 'G', mac } }));
      assert.ok(!r.ok && r.error.code === 'invalid-args' && r.error.message.includes('mac'), `${mac} -> ${JSON.stringify(r)}`);
    }
    assert.deepEqual((await k.ctl.request(keeper.sessionList, {})).sessions.map((s) => s.vm), ['v1']);
  });
});

describe('hitless-keeper upgrade (keeper/upgrade: the keeper replaced under live sessions)', () => {
  const bed = new Testbed('kupg');
  after(() => bed.cleanup());

  const sessionsOf = async (h: UpgradeHost) =>
    (await h.k.ctl.request(keeper.sessionList, {})).sessions.map((s) => ({ vm: s.vm, serving: s.serving, home: s.home, connected: s.connected, connects: s.connects, handoffs: s.handoffs, preloaded: s.preloaded }));

  test('10 keeper upgrades under traffic, 4 VMs with two moved to B and a standby pre-loaded: 0 lost, no frontend link event, the fds as before; handoffs, rollbacks and a failover work after', async () => {
    const h = await bed.upgradeHost({ vms: 4, pps: 2000, durationS: 3600, gapUs: 2000 });
    await sleep(500);
    for (const vm of ['v1', 'v2']) await h.k.ctl.request(keeper.handoffStart, { vm, gen: 'B' });
    await h.k.ctl.request(keeper.sessionPreload, { vm: 'v3', gen: 'B' });
    const before = await sessionsOf(h);
    assert.deepEqual(before.find((s) => s.vm === 'v3')!.preloaded, ['B']);
    const info0 = await h.k.ctl.request(keeper.keeperInfo, {});
    const pauses: number[] = [];
    for (let i = 1; i <= 10; i++) {
      const r = await h.k.upgrade(nativeBin('hitless-keeper'));
      assert.notEqual(r.pid, r.old_pid);
      assert.deepEqual([r.vms, r.sessions], [4, 4]);
      pauses.push(r.pause_us);
      const info = await h.k.ctl.request(keeper.keeperInfo, {});
      assert.equal(info.pid, r.pid, 'the control socket is served by the new keeper');
      assert.equal(info.fds, info0.fds, `upgrade ${i}: the new keeper holds as many fds as the first did (${info.fds} vs ${info0.fds})`);
      await sleep(200);
    }
    assert.deepEqual(await sessionsOf(h), before, 'every session where it was: serving generation, pre-loaded standby, never reconnected');
    const { gens } = await h.k.ctl.request(keeper.genList, {});
    assert.deepEqual(gens.map((g) => g.death_watch), ['loop-exit', 'loop-exit'], 'the new keeper waits on each generation\'s loop as the first did');
    // later moves: the pre-loaded v3 to B, v1 back to A (a rollback)
    const r3 = await h.k.ctl.request(keeper.handoffStart, { vm: 'v3', gen: 'B' });
    assert.deepEqual([r3.from, r3.to], ['A', 'B']);
    for (const vm of ['v1', 'v2', 'v3']) {
      const r = await h.k.ctl.request(keeper.handoffStart, { vm, gen: 'A' });
      assert.deepEqual([r.from, r.to], ['B', 'A'], `${vm} rolled back`);
    }
    await sleep(500);
    // and a failover: A (serving every VM again) dies, its sessions go to the standby B
    h.a.child.kill('SIGKILL');
    for (const t = Date.now(); !h.k.events.some((e) => e.event === 'gen/dead'); await sleep(20)) assert.ok(Date.now() - t < 20000, 'A was not found dead');
    const dead = h.k.events.find((e) => e.event === 'gen/dead')!;
    assert.ok(dead.event === 'gen/dead' && dead.data.moved === 4, JSON.stringify(dead));
    assert.match(dead.data.cause, /packet loop exited/);
    await sleep(500);
    for (const s of await sessionsOf(h)) assert.deepEqual([s.vm, s.serving, s.connected, s.connects], [s.vm, 'B', true, 1]);
    const sum = await h.probe.stop();
    assert.equal(sum.totals.lost, dead.data.lost_inside, `lost ${sum.totals.lost}, inside the dead generation ${dead.data.lost_inside}: ${explainLoss(sum, h.probe.events, switchesOf(h.k.events))}`);
    assert.equal(sum.totals.dup, 0);
    assert.deepEqual(linkEvents(h), [], 'no frontend saw its link move');
    const sorted = [...pauses].sort((x, y) => x - y);
    console.log(`keeper upgrades: control pause p50 ${sorted[4]} us, max ${sorted[9]} us; frames lost 0 outside the killed generation (${dead.data.lost_inside} inside it)`);
  });

  test('a new keeper that cannot take over is refused with the reason, and the running keeper keeps every session, its pid and its fds: missing, not executable, exits at once, another state format, killed while taking over; a keeper run by a systemd unit with no notify socket refuses to hand over', async () => {
    const h = await bed.upgradeHost({ vms: 2, pps: 2000, durationS: 3600, gapUs: 2000 });
    await sleep(300);
    await h.k.ctl.request(keeper.handoffStart, { vm: 'v1', gen: 'B' });
    const before = await sessionsOf(h);
    const info0 = await h.k.ctl.request(keeper.keeperInfo, {});
    const dir = mkdtempSync(join(tmpdir(), 'hl-kbad-'));
    const script = (name: string, body: string, mode = 0o755) => {
      writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`, { mode });
      return join(dir, name);
    };
    const cases: [string, RegExp][] = [
      [join(dir, 'missing'), /no-binary|No such file/],
      [script('noexec', 'exit 0', 0o644), /not an executable file/],
      [script('exits', 'exit 1'), /did not take over: it exited before it was ready \(exit status 1\)/],
      [nativeBin('hitless-keeper-format-next'), /did not take over: the running keeper wrote state format 1; this keeper \(.*\) reads format 2/],
      [script('killed', 'kill -9 $$'), /did not take over: it exited before it was ready \(signal 9\)/],
      ['relative/keeper', /absolute path/],
    ];
    for (const [bin, why] of cases) {
      await assert.rejects(h.k.ctl.request(keeper.keeperUpgrade, { binary: bin }), why, bin);
      const info = await h.k.ctl.request(keeper.keeperInfo, {});
      assert.deepEqual([info.pid, info.fds], [info0.pid, info0.fds], `${bin}: the same keeper, no fd leaked`);
      assert.deepEqual(await sessionsOf(h), before, `${bin}: every session as it was`);
    }
    // and it still moves sessions
    await h.k.ctl.request(keeper.handoffStart, { vm: 'v2', gen: 'B' });
    await sleep(300);
    const sum = await h.probe.stop();
    assert.equal(sum.totals.lost, 0, explainLoss(sum, h.probe.events, switchesOf(h.k.events)));
    assert.deepEqual(linkEvents(h), []);
    // a keeper that runs as a systemd service (systemd sets INVOCATION_ID) of a unit that gave
    // it no notify socket (not Type=notify) refuses: it cannot make the new keeper the unit's
    // main process, and the unit would take the new keeper down with the old one (a Type=notify
    // unit's keeper upgrades: testing/systemdHost.test.ts)
    const run = join(dir, 'sd');
    const sd = spawn(nativeBin('hitless-keeper'), ['--run-dir', run], { stdio: 'ignore', env: { ...process.env, INVOCATION_ID: '0123456789abcdef0123456789abcdef' } });
    try {
      let c: CtlClient | null = null;
      for (const t = Date.now(); !c; await sleep(50)) {
        c = await CtlClient.connect(join(run, 'ctl.sock'), 500).catch(() => null);
        assert.ok(c || Date.now() - t < 10000, 'the keeper did not start');
      }
      await assert.rejects(c.request(keeper.keeperUpgrade, { binary: nativeBin('hitless-keeper') }), /runs as a systemd service with no notify socket \(its unit is not Type=notify\).*the keeper keeps running/);
      c.close();
    } finally {
      sd.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  });
});
