// bench/run failover [--quick] [--vms N] [--pps TOTAL] [--runs R]
//
// kill -9 of the serving generation, R times on a fresh host each time: the keeper detects
// the death (heartbeat stopped + every thread PF_EXITING, or the sockets closing, whichever
// comes first), reads each ring's position from guest memory and starts the sessions on the
// pre-loaded standby. Same shape as bench/run handoff, plus where the time goes: kill ->
// detection -> every VM moved -> resumed, and the loss split into the frames that were inside the dead
// process (its heartbeat page's in/out counters) and any lost elsewhere (the goal: none).
// resume_ms: kill -> the first frame the standby put into each VM (its per-VM first_tx_ns, reset
// when the session starts there): the VM's traffic is back, timed inside the datapath, clear of
// the probe's own scheduling gaps.
// Then a standby is restored as the agent does it and the survivor is killed too (second_crash),
// and then the last generation, with no standby left: the frontends must see their links go down.
import { keeper, type KeeperEvent } from '../protocol/native/keeper.js';
import { dp } from '../protocol/native/dp.js';
import { labVms, Testbed, type UpgradeHost } from '../testing/testbed.js';
import { attribute, type EventWindow } from '../protocol/measure.js';
import { gapsOf, probe as probeCmd } from '../protocol/native/probe.js';
import { BreakTally, finish, numOpt, pct, quick, run, sleep } from './lib.js';

const nVms = numOpt('failover', '--vms', quick ? 2 : 4);
const totalPps = numOpt('failover', '--pps', 50000);
const runs = numOpt('failover', '--runs', quick ? 3 : 8);
const GAP_US = 500;

const nowNs = (): number => Number(process.hrtime.bigint()); // CLOCK_MONOTONIC, as the natives
type GenDead = Extract<KeeperEvent, { event: 'gen/dead' }>['data'];

/** The probe's frames lost so far: its flows paused and drained first (a running count holds
 * the frames still on their way as lost), then resumed. */
async function lostSoFar(h: UpgradeHost): Promise<number> {
  const flows = (await h.probe.ctl!.request(probeCmd.statsShow, {})).flows.map((f) => `${f.src}:${f.dst}`);
  for (const flow of flows) await h.probe.ctl!.request(probeCmd.flowPause, { flow });
  await sleep(300);
  const lost = (await h.probe.ctl!.request(probeCmd.statsShow, {})).totals.lost;
  for (const flow of flows) await h.probe.ctl!.request(probeCmd.flowResume, { flow });
  return lost;
}

async function waitDeath(h: UpgradeHost, n: number): Promise<GenDead> {
  for (let i = 0; i < 250; i++) {
    const dead = h.k.events.flatMap((e) => (e.event === 'gen/dead' ? [e.data] : []));
    if (dead.length >= n) return dead[n - 1]!;
    await sleep(20);
  }
  throw new Error(`death ${n} not detected: ${JSON.stringify(h.k.events.slice(-5))}`);
}

async function main(): Promise<void> {
  const tally = new BreakTally();
  const windowUs: number[] = [];
  const detectMs: number[] = [];
  const movedMs: number[] = [];
  const resumeMs: number[] = [];
  const causes = new Map<string, number>();
  let failovers = 0;
  let lostInside = 0;
  let lostElsewhere = 0;
  const second = { failovers: 0, lost: 0, lost_inside: 0, links: 0, gapMs: [] as number[], linkDownMs: [] as number[] };
  for (let r = 0; r < runs; r++) {
    const bed = new Testbed('bench-failover');
    try {
      const perVm = Math.max(1, Math.floor(totalPps / nVms));
      const h = await bed.upgradeHost({ vms: nVms, pps: perVm, durationS: 3600, gapUs: GAP_US });
      for (const vm of h.vms) await h.k.ctl.request(keeper.sessionPreload, { vm, gen: 'B' });
      await sleep(1000);
      const killNs = nowNs();
      h.a.child.kill('SIGKILL');
      const dead = await waitDeath(h, 1);
      await sleep(1000);
      const onB = (await h.b.ctl.request(dp.statsShow, {})).vms;
      for (const vm of h.vms) {
        const first = onB[vm]?.first_tx_ns ?? 0;
        if (first < killNs) throw new Error(`run ${r + 1}: the standby put no frame into ${vm} after the kill`);
        resumeMs.push((first - killNs) / 1e6);
      }
      const lost1 = await lostSoFar(h);
      const windows: EventWindow[] = [];
      for (const e of h.k.events) {
        if (e.event === 'failover/done') {
          windows.push({ vm: e.data.vm, start_ns: killNs, end_ns: e.data.timing.resumed_ns });
          windowUs.push(e.data.timing.window_ns / 1000);
          failovers++;
        }
      }
      detectMs.push((dead.t_ns - killNs) / 1e6);
      movedMs.push((dead.done_ns - killNs) / 1e6);
      causes.set(dead.cause, (causes.get(dead.cause) ?? 0) + 1);
      lostInside += dead.lost_inside ?? 0;
      lostElsewhere += lost1 - (dead.lost_inside ?? 0);

      // the standby restored as the agent does it (a replacement joined to the survivor's peer
      // link, sessions pre-loaded), then a second crash: of the generation now serving
      await h.b.ctl.request(dp.peerDetach, {});
      const peer = `${bed.dir}/peer-restored.sock`;
      await h.b.ctl.request(dp.peerAttach, { socket: peer, server: true });
      const c = await bed.dp('C', { peer: { socket: peer, server: false } });
      await c.serve(labVms(nVms));
      await h.k.attach(c);
      await h.k.ctl.request(keeper.failoverStandby, { gen: 'C' });
      for (const vm of h.vms) await h.k.ctl.request(keeper.sessionPreload, { vm, gen: 'C' });
      await sleep(1000);
      const links0 = h.probe.events.filter((e) => e.event === 'link').length;
      const kill2 = nowNs();
      h.b.child.kill('SIGKILL');
      const dead2 = await waitDeath(h, 2);
      await sleep(1000);
      const lost2 = (await lostSoFar(h)) - lost1;
      second.failovers += dead2.moved;
      second.lost += lost2;
      second.lost_inside += dead2.lost_inside ?? 0;
      second.links += h.probe.events.filter((e) => e.event === 'link').length - links0;
      const g2 = gapsOf(h.probe.events).filter((g) => g.end_ns > kill2 && g.start_ns < kill2 + 1e9);
      second.gapMs.push(g2.length ? Math.max(...g2.map((g) => g.gap_us)) / 1000 : 0);

      // and a third, with no standby left: the frontends must see their links go down
      const kill3 = nowNs();
      c.child.kill('SIGKILL');
      for (let i = 0; i < 250 && h.probe.events.filter((e) => e.event === 'link' && !e.data.up && e.data.t_ns > kill3).length < nVms; i++) await sleep(20);
      const downs = h.probe.events.flatMap((e) => (e.event === 'link' && !e.data.up && e.data.t_ns > kill3 ? [e.data.t_ns] : []));
      if (downs.length < nVms) throw new Error(`run ${r + 1}: with no standby, only ${downs.length} of ${nVms} frontends saw their link go down`);
      second.linkDownMs.push((Math.max(...downs) - kill3) / 1e6);

      const sum = await h.probe.stop();
      tally.add(attribute(gapsOf(h.probe.events).filter((g) => g.start_ns < kill2), windows, GAP_US), {
        ...sum.totals,
        lost: lost1,
        links: h.probe.events.filter((e) => e.event === 'link').length - (second.links + downs.length),
      });
      console.error(
        `run ${r + 1}/${runs}: detected after ${detectMs.at(-1)?.toFixed(2)} ms, resumed after ${resumeMs.at(-1)?.toFixed(2)} ms, all moved after ${movedMs.at(-1)?.toFixed(2)} ms, lost ${lost1} (inside the dead ${dead.lost_inside}); ` +
          `second crash: gap ${second.gapMs.at(-1)} ms, lost ${lost2} (inside ${dead2.lost_inside}); no standby: links down after ${second.linkDownMs.at(-1)?.toFixed(1)} ms`,
      );
    } finally {
      await bed.cleanup();
    }
  }
  const result = {
    vms: nVms,
    pps_total: Math.floor(totalPps / nVms) * nVms,
    runs,
    failovers,
    ...tally.json(),
    lost_inside_dead: lostInside,
    lost_elsewhere: lostElsewhere,
    window_us: pct(windowUs),
    resume_ms: pct(resumeMs),
    detect_ms: pct(detectMs),
    all_moved_ms: pct(movedMs),
    detected_by: Object.fromEntries(causes),
    second_crash: {
      failovers: second.failovers,
      gap_ms: pct(second.gapMs),
      lost: second.lost,
      lost_inside_dead: second.lost_inside,
      lost_elsewhere: second.lost - second.lost_inside,
      link_events: second.links,
      no_standby_links_down_ms: pct(second.linkDownMs),
    },
  };
  finish('failover', [
    `kill -9 of the serving generation, ${runs} runs, ${nVms} VMs each, ${result.pps_total} pps in all, standby pre-loaded.`,
    '',
    `- ${failovers} sessions failed over; lost ${tally.lost} of ${tally.offered} offered: ${lostInside} inside the dead process (taken, not yet let out), ${lostElsewhere} elsewhere; duplicated ${tally.dup}, link events at the frontends ${tally.links}`,
    `- where the time goes: kill -> death detected p50 ${result.detect_ms.p50} ms (max ${result.detect_ms.max}); kill -> every VM running on the standby p50 ${result.all_moved_ms.p50} ms (max ${result.all_moved_ms.max}); ` +
      `the keeper's own window per VM (positions from guest memory, start on the standby) p50 ${result.window_us.p50} us, p99 ${result.window_us.p99} us`,
    `- kill -> the standby's first frame into each VM (resume): p50 ${result.resume_ms.p50} ms, p99 ${result.resume_ms.p99} ms, max ${result.resume_ms.max} ms (${resumeMs.length} VMs)`,
    `- detected by: ${[...causes].map(([c, n]) => `${c} (${n})`).join('; ')}`,
    `- second crash (the survivor killed after a standby was restored beside it): ${second.failovers} sessions failed over, worst gap p50 ${result.second_crash.gap_ms.p50} ms (max ${result.second_crash.gap_ms.max}), lost ${second.lost} (${second.lost_inside} inside the dead), link events ${second.links}`,
    `- a crash with no standby left: every frontend saw its link down after p50 ${result.second_crash.no_standby_links_down_ms.p50} ms (max ${result.second_crash.no_standby_links_down_ms.max}): never a silent blackhole`,
    ...tally.lines('failover (kill -> resume)'),
  ], result);
}

run('failover', main);
