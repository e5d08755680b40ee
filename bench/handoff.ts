// bench/run handoff [--quick] [--vms N] [--pps TOTAL] [--rounds R]
//
// Live handoff through the keeper with stock frontends (virtio_user): N probe VMs on one host
// with a ring of flows (TOTAL pps in all), each VM handed A->B->A R times, one at a time, the
// rest of the host's traffic flowing. Reports lost/duplicated frames and link events at the
// frontends (exact), the keeper's control-plane window (quiesce -> resume, measured inside the
// keeper), and the receive gap charged to each handoff beside the background gaps of the same
// run (scheduler noise on 2 shared cores).
import { mkdirSync, writeFileSync } from 'node:fs';
import { keeper } from '../agent/src/native/keeperProtocol.js';
import { Testbed } from '../agent/src/native/testbed.js';
import { attribute, type EventWindow } from './attribution.js';
import { stats } from './lib.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
function opt(name: string, dflt: number): number {
  const i = argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`bench handoff: ${name} needs a positive integer`);
    process.exit(2);
  }
  return v;
}
const nVms = opt('--vms', quick ? 4 : 8);
const totalPps = opt('--pps', 50000);
const rounds = opt('--rounds', quick ? 3 : 5);
const GAP_US = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const r2 = (x: number) => Math.round(x * 100) / 100;

async function main(): Promise<void> {
  const bed = new Testbed('bench-handoff');
  const windows: EventWindow[] = [];
  const windowUs: number[] = [];
  const preloadMs: number[] = [];
  const stopUs: number[] = []; // old generation stops the rings (GET_VRING_BASE, incl. its drain)
  const startUs: number[] = []; // new generation gets positions, enable, status (acked)
  try {
    const perVm = Math.max(1, Math.floor(totalPps / nVms));
    // long enough for every handoff plus settling; the probe is stopped when we are done
    const h = await bed.upgradeHost({ vms: nVms, pps: perVm, durationS: 3600, gapUs: GAP_US });
    await sleep(1000);
    for (let r = 0; r < rounds; r++) {
      for (const to of ['B', 'A']) {
        for (const vm of h.vms) {
          // pre-load first (the target maps guest memory), then switch: as an operator's
          // prepare step would, so the break holds only the switch itself
          const pre = await h.k.ctl.request(keeper.sessionPreload, { vm, gen: to });
          preloadMs.push(pre.took_ns / 1e6);
          await sleep(50);
          const res = await h.k.ctl.request(keeper.handoffStart, { vm, gen: to });
          windows.push({ vm, start_ns: res.timing.quiesce_ns, end_ns: res.timing.resumed_ns });
          windowUs.push(res.timing.window_ns / 1000);
          stopUs.push((res.timing.bases_ns - res.timing.quiesce_ns) / 1000);
          startUs.push((res.timing.replayed_ns - res.timing.bases_ns) / 1000);
          await sleep(100);
        }
      }
      console.error(`round ${r + 1}/${rounds}: ${windows.length} handoffs so far`);
    }
    await sleep(500);
    const sum = await h.probe.stop();
    const a = attribute(h.probe.events, windows, GAP_US);
    const w = stats(windowUs);
    const g = stats(a.event_gap_ms);
    const bg = stats(a.background_gap_ms);
    const linkEvents = h.probe.events.filter((e) => e.event === 'link').length;
    const result = {
      bench: 'handoff',
      vms: nVms,
      pps_total: perVm * nVms,
      handoffs: windows.length,
      lost: sum.totals.lost,
      dup: sum.totals.dup,
      frontend_events: linkEvents,
      window_us: { p50: r2(w.p50), p99: r2(w.p99), max: r2(w.max) },
      window_parts_us: {
        stop_old: { p50: r2(stats(stopUs).p50), p99: r2(stats(stopUs).p99) },
        start_new: { p50: r2(stats(startUs).p50), p99: r2(stats(startUs).p99) },
      },
      gap_ms: { p50: r2(g.p50), p99: r2(g.p99), max: r2(g.max) },
      gap_below_threshold: a.below_threshold,
      gap_threshold_ms: GAP_US / 1000,
      background_gap_ms: { p99: r2(bg.p99), max: r2(bg.max), count: bg.n },
      preload_ms: { p50: r2(stats(preloadMs).p50), max: r2(stats(preloadMs).max) },
      offered: sum.totals.offered,
      seconds: r2(sum.duration_s),
    };
    const report = [
      `# bench handoff — ${new Date().toISOString()}`,
      '',
      `${nVms} VMs, ${result.pps_total} pps in all, ${windows.length} handoffs (each VM A->B->A x${rounds}), stock virtio_user frontends.`,
      '',
      `- lost ${result.lost}, duplicated ${result.dup}, link events at the frontends ${linkEvents} (of ${result.offered} frames offered)`,
      `- control-plane window (quiesce -> resume): p50 ${result.window_us.p50} us, p99 ${result.window_us.p99} us, max ${result.window_us.max} us`,
      `  of which the old generation stopping the rings (GET_VRING_BASE incl. its drain): p50 ${result.window_parts_us.stop_old.p50} us, ` +
        `p99 ${result.window_parts_us.stop_old.p99} us; the new one starting them: p50 ${result.window_parts_us.start_new.p50} us, p99 ${result.window_parts_us.start_new.p99} us`,
      `- receive gap charged to a handoff: p50 ${result.gap_ms.p50} ms, p99 ${result.gap_ms.p99} ms, max ${result.gap_ms.max} ms ` +
        `(${a.below_threshold} of ${windows.length} handoffs left no gap over ${GAP_US / 1000} ms; they count as ${GAP_US / 1000} ms)`,
      `- pre-load (before each switch, outside the break): p50 ${result.preload_ms.p50} ms, max ${result.preload_ms.max} ms`,
      `- background gaps of the same run (no handoff near): ${bg.n}, p99 ${result.background_gap_ms.p99} ms, max ${result.background_gap_ms.max} ms`,
      '',
    ].join('\n');
    mkdirSync('bench/results', { recursive: true });
    writeFileSync(`bench/results/handoff-${Date.now()}.md`, report);
    console.error(report);
    console.log(JSON.stringify(result));
  } finally {
    await bed.cleanup();
  }
}

main().catch((e: unknown) => {
  console.error(`bench handoff failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
