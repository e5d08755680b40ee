// bench/run host-upgrade [--quick] [--vms N] [--pps-per-vm P] [--mode handoff|swap]
//
// A whole host: N VMs (default 64) moved from generation A to B one by one, back to back,
// with traffic between them. The standby is pre-loaded for every VM first (the prepare step,
// timed apart); the wall time is from the first switch to the last. Goal: under 1000 ms.
// --mode swap: the same host upgraded by swapping generation A's forwarding stage in place
// (another build of it) instead: every VM at once; the wall time is lib/swap's round trip.
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { dp } from '../protocol/native/dp.js';
import { keeper } from '../protocol/native/keeper.js';
import { nativeBin } from '../testing/procs.js';
import { Testbed } from '../testing/testbed.js';
import { finish, numOpt, pct, quick, round2 as r2, run, sleep } from './lib.js';

const nVms = numOpt('host-upgrade', '--vms', quick ? 16 : 64);
const ppsPerVm = numOpt('host-upgrade', '--pps-per-vm', 500);
const modeAt = process.argv.indexOf('--mode');
const mode = modeAt > 0 ? process.argv[modeAt + 1] : 'handoff';
if (mode !== 'handoff' && mode !== 'swap') {
  console.error(`host-upgrade: --mode: handoff or swap, not '${mode}'`);
  process.exit(2);
}

async function main(): Promise<void> {
  const bed = new Testbed('bench-host');
  try {
    const h = await bed.upgradeHost({ vms: nVms, pps: ppsPerVm, durationS: 3600, gapUs: 5000 });
    await sleep(1000);
    const windows: number[] = [];
    let preloadMs = 0;
    let wallMs = 0;
    if (mode === 'handoff') {
      const p0 = performance.now();
      for (const vm of h.vms) await h.k.ctl.request(keeper.sessionPreload, { vm, gen: 'B' });
      preloadMs = performance.now() - p0;
      const t0 = performance.now();
      for (const vm of h.vms) windows.push((await h.k.ctl.request(keeper.handoffStart, { vm, gen: 'B' })).timing.window_ns / 1000);
      wallMs = performance.now() - t0;
    } else {
      const stage = join(bed.dir, 'hitless-fwd-l2-rebuild.so');
      copyFileSync(nativeBin('hitless-fwd-l2.so'), stage);
      const t0 = performance.now();
      const r = await h.a.ctl.request(dp.libSwap, { path: stage });
      wallMs = performance.now() - t0;
      windows.push(r.window_ns / 1000);
    }
    await sleep(1000);
    const sums = await Promise.all(h.probes.map((p) => p.stop()));
    const total = (k: 'lost' | 'dup' | 'offered'): number => sums.reduce((n, s) => n + s.totals[k], 0);
    const result = {
      mode,
      vms: nVms,
      wall_ms: r2(wallMs),
      lost: total('lost'),
      dup: total('dup'),
      frontend_events: h.probes.flatMap((p) => p.events).filter((e) => e.event === 'link').length,
      preload_ms: r2(preloadMs),
      window_us: pct(windows),
      pps_total: ppsPerVm * nVms,
      offered: total('offered'),
    };
    finish('host-upgrade', [
      mode === 'handoff'
        ? `${nVms} VMs on one host moved A -> B one by one, ${result.pps_total} pps between them.`
        : `${nVms} VMs on one host: generation A's forwarding stage swapped in place under all of them at once, ${result.pps_total} pps between them.`,
      '',
      mode === 'handoff'
        ? `- wall time of the switches, first to last: ${result.wall_ms} ms (goal < 1000 ms); pre-loading all ${nVms} before: ${result.preload_ms} ms`
        : `- wall time of the swap (lib/swap's round trip, dlopen included): ${result.wall_ms} ms (goal < 1000 ms)`,
      `- lost ${result.lost} of ${result.offered}, duplicated ${result.dup}, link events at the frontends ${result.frontend_events}`,
      mode === 'handoff'
        ? `- per-VM control-plane window: p50 ${result.window_us.p50} us, p99 ${result.window_us.p99} us, max ${result.window_us.max} us`
        : `- the loop's window (forwarding stopped, for every VM at once): ${result.window_us.max} us`,
    ], result);
  } finally {
    await bed.cleanup();
  }
}

run('host-upgrade', main);
