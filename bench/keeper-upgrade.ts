// bench/run keeper-upgrade [--quick] [--upgrades N] [--pps PER_VM]
//
// The keeper replaced under live sessions (keeper/upgrade, DESIGN.md §14), N times in a row on
// one host mid-upgrade: 4 VMs talking in a ring, two of them moved to generation B, one pre-loaded
// on B as its standby. Each upgrade hands every session to a new keeper process (the same
// binary: what is measured is the handover, not what changed).
//   control_pause_ms: how long the keeper held its relay (the frontends' control messages wait;
//     no frame passes through the keeper): from the request to the new keeper's "ready";
//   gap_ms: the receive gaps (above the probe's threshold) that touch an upgrade, beside the
//     run's other gaps (background_gap_ms): the upgrade costs nothing if they look alike;
//   lost, dup, frontend_events (link changes at the frontends) over the whole run.
import { keeper } from '../protocol/native/keeper.js';
import { gapsOf } from '../protocol/native/probe.js';
import { nativeBin } from '../testing/procs.js';
import { Testbed } from '../testing/testbed.js';
import { background, finish, numOpt, pct, quick, run, sleep } from './lib.js';

const upgrades = numOpt('keeper-upgrade', '--upgrades', quick ? 10 : 40);
const pps = numOpt('keeper-upgrade', '--pps', 5000);
const GAP_US = 1000;
const nowNs = (): number => Number(process.hrtime.bigint()); // CLOCK_MONOTONIC, as the natives

async function main(): Promise<void> {
  const bed = new Testbed('bench-kupg');
  try {
    const h = await bed.upgradeHost({ vms: 4, pps, durationS: 3600, gapUs: GAP_US });
    await sleep(1000);
    for (const vm of ['v1', 'v2']) await h.k.ctl.request(keeper.handoffStart, { vm, gen: 'B' });
    await h.k.ctl.request(keeper.sessionPreload, { vm: 'v3', gen: 'B' });
    await sleep(1000);
    const fds0 = (await h.k.ctl.request(keeper.keeperInfo, {})).fds;
    const pauseMs: number[] = [];
    const windows: { start: number; end: number }[] = [];
    const fds: number[] = [];
    for (let i = 0; i < upgrades; i++) {
      const start = nowNs();
      const r = await h.k.upgrade(nativeBin('hitless-keeper'));
      windows.push({ start, end: nowNs() });
      pauseMs.push(r.pause_us / 1000);
      fds.push((await h.k.ctl.request(keeper.keeperInfo, {})).fds);
      await sleep(300);
    }
    await sleep(1000);
    const sessions = (await h.k.ctl.request(keeper.sessionList, {})).sessions;
    const sum = await h.probe.stop();
    const gaps = gapsOf(h.probe.events);
    // (a gap touches an upgrade when they overlap, with 1 ms either side)
    const touches = (g: { start_ns: number; end_ns: number }) => windows.some((w) => g.end_ns >= w.start - 1e6 && g.start_ns <= w.end + 1e6);
    const atUpgrades = gaps.filter(touches).map((g) => g.gap_us / 1000);
    const elsewhere = gaps.filter((g) => !touches(g)).map((g) => g.gap_us / 1000);
    const frontendEvents = h.probe.events.filter((e) => e.event === 'link').length;
    const result = {
      upgrades,
      vms: h.vms.length,
      pps_per_vm: pps,
      lost: sum.totals.lost,
      dup: sum.totals.dup,
      frontend_events: frontendEvents,
      reconnects: sessions.reduce((n, s) => n + s.connects - 1, 0),
      control_pause_ms: pct(pauseMs),
      gap_ms: pct(atUpgrades),
      gaps_at_upgrades: atUpgrades.length,
      background_gap_ms: background(elsewhere),
      gap_threshold_ms: GAP_US / 1000,
      keeper_fds: { before: fds0, after_each: [...new Set(fds)] },
    };
    finish('keeper-upgrade', [
      `${upgrades} keeper upgrades in a row, ${h.vms.length} VMs (${pps} pps each, in a ring), two of them on generation B and one pre-loaded there.`,
      '',
      `- lost ${sum.totals.lost} of ${sum.totals.offered} offered, duplicated ${sum.totals.dup}; link events at the frontends ${frontendEvents}; reconnects ${result.reconnects}`,
      `- control pause (the keeper's relay held, request -> new keeper ready): p50 ${result.control_pause_ms.p50} ms, p99 ${result.control_pause_ms.p99} ms, max ${result.control_pause_ms.max} ms`,
      `- receive gaps over ${GAP_US / 1000} ms touching an upgrade: ${atUpgrades.length} (p50 ${result.gap_ms.p50} ms, max ${result.gap_ms.max} ms); elsewhere in the same run (the machine's background): ${elsewhere.length} (p99 ${result.background_gap_ms.p99} ms, max ${result.background_gap_ms.max} ms)`,
      `- the keeper's open fds: ${fds0} before, ${result.keeper_fds.after_each.join(', ')} after each upgrade`,
    ], result);
  } finally {
    await bed.cleanup();
  }
}

run('keeper-upgrade', main);
