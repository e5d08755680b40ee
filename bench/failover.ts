// bench/run failover [--quick] [--vms N] [--pps TOTAL] [--runs R]
//
// kill -9 of the serving generation, R times on a fresh host each time: the keeper detects
// the death (heartbeat stopped + every thread PF_EXITING, or the sockets closing, whichever
// comes first), reads each ring's position from guest memory and starts the sessions on the
// pre-loaded standby. Same shape as bench/run handoff, plus where the time goes: kill ->
// detection -> every VM moved.
import { keeper } from '../agent/src/native/keeperProtocol.js';
import { Testbed } from '../agent/src/native/testbed.js';
import { attribute, type EventWindow } from '../agent/src/native/breaktime.js';
import { finish, numOpt, pct, quick, round2 as r2, run, sleep, stats } from './lib.js';

const nVms = numOpt('failover', '--vms', quick ? 2 : 4);
const totalPps = numOpt('failover', '--pps', 50000);
const runs = numOpt('failover', '--runs', quick ? 3 : 8);
const GAP_US = 500;

const nowNs = (): number => Number(process.hrtime.bigint()); // CLOCK_MONOTONIC, as the natives

async function main(): Promise<void> {
  const gaps: number[] = [];
  const bgs: number[] = [];
  const windowUs: number[] = [];
  const detectMs: number[] = [];
  const movedMs: number[] = [];
  const causes = new Map<string, number>();
  let lost = 0;
  let dup = 0;
  let linkEvents = 0;
  let offered = 0;
  let below = 0;
  let failovers = 0;
  for (let r = 0; r < runs; r++) {
    const bed = new Testbed('bench-failover');
    try {
      const perVm = Math.max(1, Math.floor(totalPps / nVms));
      const h = await bed.upgradeHost({ vms: nVms, pps: perVm, durationS: 3600, gapUs: GAP_US });
      for (const vm of h.vms) await h.k.ctl.request(keeper.sessionPreload, { vm, gen: 'B' });
      await sleep(1000);
      const killNs = nowNs();
      h.a.child.kill('SIGKILL');
      for (let i = 0; i < 100 && !h.k.events.some((e) => e.event === 'gen/dead'); i++) await sleep(20);
      await sleep(1000);
      const sum = await h.probe.stop();
      const windows: EventWindow[] = [];
      for (const e of h.k.events) {
        if (e.event === 'failover/done') {
          windows.push({ vm: e.data.vm, start_ns: killNs, end_ns: e.data.timing.resumed_ns });
          windowUs.push(e.data.timing.window_ns / 1000);
          failovers++;
        } else if (e.event === 'gen/dead') {
          detectMs.push((e.data.t_ns - killNs) / 1e6);
          movedMs.push((e.data.done_ns - killNs) / 1e6);
          causes.set(e.data.cause, (causes.get(e.data.cause) ?? 0) + 1);
        }
      }
      const a = attribute(h.probe.events, windows, GAP_US);
      gaps.push(...a.event_gap_ms);
      bgs.push(...a.background_gap_ms);
      below += a.below_threshold;
      lost += sum.totals.lost;
      dup += sum.totals.dup;
      offered += sum.totals.offered;
      linkEvents += h.probe.events.filter((e) => e.event === 'link').length;
      console.error(`run ${r + 1}/${runs}: detected after ${detectMs.at(-1)?.toFixed(2)} ms, all moved after ${movedMs.at(-1)?.toFixed(2)} ms, lost ${sum.totals.lost}`);
    } finally {
      await bed.cleanup();
    }
  }
  const bg = stats(bgs);
  const result = {
    vms: nVms,
    pps_total: Math.floor(totalPps / nVms) * nVms,
    runs,
    failovers,
    lost,
    dup,
    frontend_events: linkEvents,
    window_us: pct(windowUs),
    gap_ms: pct(gaps),
    gap_below_threshold: below,
    background_gap_ms: { p99: r2(bg.p99), max: r2(bg.max), count: bg.n },
    detect_ms: pct(detectMs),
    all_moved_ms: pct(movedMs),
    detected_by: Object.fromEntries(causes),
    offered,
  };
  finish('failover', [
    `kill -9 of the serving generation, ${runs} runs, ${nVms} VMs each, ${result.pps_total} pps in all, standby pre-loaded.`,
    '',
    `- ${failovers} sessions failed over; lost ${lost} of ${offered} offered, duplicated ${dup}, link events at the frontends ${linkEvents}`,
    `- where the time goes: kill -> death detected p50 ${result.detect_ms.p50} ms (max ${result.detect_ms.max}); kill -> every VM running on the standby p50 ${result.all_moved_ms.p50} ms (max ${result.all_moved_ms.max}); ` +
      `the keeper's own window per VM (positions from guest memory, start on the standby) p50 ${result.window_us.p50} us, p99 ${result.window_us.p99} us`,
    `- detected by: ${[...causes].map(([c, n]) => `${c} (${n})`).join('; ')}`,
    `- receive gap charged to a failover (kill -> resume): p50 ${result.gap_ms.p50} ms, p99 ${result.gap_ms.p99} ms, max ${result.gap_ms.max} ms`,
    `- background gaps of the same runs: ${bg.n}, p99 ${result.background_gap_ms.p99} ms, max ${result.background_gap_ms.max} ms`,
  ], result);
}

run('failover', main);
