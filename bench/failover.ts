// bench/run failover [--quick] [--vms N] [--pps TOTAL] [--runs R]
//
// kill -9 of the serving generation, R times on a fresh host each time: the keeper detects
// the death (heartbeat stopped + every thread PF_EXITING, or the sockets closing, whichever
// comes first), reads each ring's position from guest memory and starts the sessions on the
// pre-loaded standby. Same shape as bench/run handoff, plus where the time goes: kill ->
// detection -> every VM moved.
import { keeper } from '../protocol/native/keeper.js';
import { Testbed } from '../testing/testbed.js';
import { attribute, type EventWindow } from '../protocol/measure.js';
import { gapsOf } from '../protocol/native/probe.js';
import { BreakTally, finish, numOpt, pct, quick, run, sleep } from './lib.js';

const nVms = numOpt('failover', '--vms', quick ? 2 : 4);
const totalPps = numOpt('failover', '--pps', 50000);
const runs = numOpt('failover', '--runs', quick ? 3 : 8);
const GAP_US = 500;

const nowNs = (): number => Number(process.hrtime.bigint()); // CLOCK_MONOTONIC, as the natives

async function main(): Promise<void> {
  const tally = new BreakTally();
  const windowUs: number[] = [];
  const detectMs: number[] = [];
  const movedMs: number[] = [];
  const causes = new Map<string, number>();
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
      tally.add(attribute(gapsOf(h.probe.events), windows, GAP_US), {
        ...sum.totals,
        links: h.probe.events.filter((e) => e.event === 'link').length,
      });
      console.error(`run ${r + 1}/${runs}: detected after ${detectMs.at(-1)?.toFixed(2)} ms, all moved after ${movedMs.at(-1)?.toFixed(2)} ms, lost ${sum.totals.lost}`);
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
    window_us: pct(windowUs),
    detect_ms: pct(detectMs),
    all_moved_ms: pct(movedMs),
    detected_by: Object.fromEntries(causes),
  };
  finish('failover', [
    `kill -9 of the serving generation, ${runs} runs, ${nVms} VMs each, ${result.pps_total} pps in all, standby pre-loaded.`,
    '',
    `- ${failovers} sessions failed over; lost ${tally.lost} of ${tally.offered} offered, duplicated ${tally.dup}, link events at the frontends ${tally.links}`,
    `- where the time goes: kill -> death detected p50 ${result.detect_ms.p50} ms (max ${result.detect_ms.max}); kill -> every VM running on the standby p50 ${result.all_moved_ms.p50} ms (max ${result.all_moved_ms.max}); ` +
      `the keeper's own window per VM (positions from guest memory, start on the standby) p50 ${result.window_us.p50} us, p99 ${result.window_us.p99} us`,
    `- detected by: ${[...causes].map(([c, n]) => `${c} (${n})`).join('; ')}`,
    ...tally.lines('failover (kill -> resume)'),
  ], result);
}

run('failover', main);
