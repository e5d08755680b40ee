// bench/run host-upgrade [--quick] [--vms N] [--pps-per-vm P]
//
// A whole host: N VMs (default 64) moved from generation A to B one by one, back to back,
// with traffic between them. The standby is pre-loaded for every VM first (the prepare step,
// timed apart); the wall time is from the first switch to the last. Goal: under 1000 ms.
import { keeper } from '../agent/src/native/keeperProtocol.js';
import { Testbed } from '../agent/src/native/testbed.js';
import { finish, numOpt, pct, quick, round2 as r2, run, sleep } from './lib.js';

const nVms = numOpt('host-upgrade', '--vms', quick ? 16 : 64);
const ppsPerVm = numOpt('host-upgrade', '--pps-per-vm', 500);

async function main(): Promise<void> {
  const bed = new Testbed('bench-host');
  try {
    const h = await bed.upgradeHost({ vms: nVms, pps: ppsPerVm, durationS: 3600, gapUs: 5000 });
    await sleep(1000);
    const p0 = performance.now();
    for (const vm of h.vms) await h.k.ctl.request(keeper.sessionPreload, { vm, gen: 'B' });
    const preloadMs = performance.now() - p0;
    const windows: number[] = [];
    const t0 = performance.now();
    for (const vm of h.vms) windows.push((await h.k.ctl.request(keeper.handoffStart, { vm, gen: 'B' })).timing.window_ns / 1000);
    const wallMs = performance.now() - t0;
    await sleep(1000);
    const sums = await Promise.all(h.probes.map((p) => p.stop()));
    const total = (k: 'lost' | 'dup' | 'offered'): number => sums.reduce((n, s) => n + s.totals[k], 0);
    const result = {
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
      `${nVms} VMs on one host moved A -> B one by one, ${result.pps_total} pps between them.`,
      '',
      `- wall time of the switches, first to last: ${result.wall_ms} ms (goal < 1000 ms); pre-loading all ${nVms} before: ${result.preload_ms} ms`,
      `- lost ${result.lost} of ${result.offered}, duplicated ${result.dup}, link events at the frontends ${result.frontend_events}`,
      `- per-VM control-plane window: p50 ${result.window_us.p50} us, p99 ${result.window_us.p99} us, max ${result.window_us.max} us`,
    ], result);
  } finally {
    await bed.cleanup();
  }
}

run('host-upgrade', main);
