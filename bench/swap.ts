// bench/run swap [--quick] [--vms N] [--pps TOTAL] [--rounds R] [--fdb LEARNED]
//
// In-place swap of the forwarding stage inside one running generation (lib/swap, the Baidu
// approach), each stage loaded ahead (lib/load, the prepare step) so the swap only switches:
// N probe VMs with a ring of flows (TOTAL pps in all) stay connected to the same generation
// while its stage is replaced under them, R rounds of:
//  - a same-layout swap (another build of this release's stage: the usual bug-fix case), and
//  - a layout change 2 -> 1 -> 2 (the FDB's words converted while the loop stands still).
// The generation has an uplink (a veth) and LEARNED uplink hosts in its FDB besides its VMs, so
// a layout change has a table of realistic size to convert.
// Reports lost/duplicated frames and link events at the frontends (exact), the loop's window
// (how long it forwarded nothing: measured inside the loop), and the receive gap charged to each
// swap beside the background gaps of the same run (scheduler noise on 2 shared cores), and beside
// two controls with the same attribution: windows 25 ms before each swap when nothing happened
// (idle), and the span of a lib/check of the same stage 50 ms after each swap (the control
// plane's work without the switch: dlopen on the control thread, which shares core 0 with the
// probe). A swap whose gaps look like lib/check's cost the datapath nothing measurable; what
// they add over idle is the measuring probe losing its core to the control plane.
// Same shape as bench/run handoff; "switches" counts swaps.
import { copyFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { attribute, type EventWindow } from '../protocol/measure.js';
import { gapsOf } from '../protocol/native/probe.js';
import { dp, type SwapResult } from '../protocol/native/dp.js';
import { nativeBin } from '../testing/procs.js';
import { labVms, Testbed } from '../testing/testbed.js';
import { background, finish, numOpt, pct, quick, round2 as r2, run, sleep } from './lib.js';

const nVms = numOpt('swap', '--vms', quick ? 4 : 8);
const totalPps = numOpt('swap', '--pps', 50000);
const rounds = numOpt('swap', '--rounds', quick ? 5 : 20);
const learned = numOpt('swap', '--fdb', quick ? 200 : 1000);
const GAP_US = 500;
const LAYOUT1 = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'native/build/src/fwd/hitless-fwd-l2-layout1.so');

async function main(): Promise<void> {
  const bed = new Testbed('bench-swap');
  const windows: EventWindow[] = [];
  const placebo: EventWindow[] = [];
  const checks: EventWindow[] = [];
  const sameUs: number[] = [];
  const changeUs: number[] = [];
  const waitUs: number[] = [];
  const swaps: { kind: string; at_ns: number }[] = [];
  const loadMs: number[] = [];
  const migrated: number[] = [];
  try {
    // two builds of this release's stage (distinct files, so distinct objects), and layout 1
    const stageA = nativeBin('hitless-fwd-l2.so');
    const stageB = join(bed.dir, 'hitless-fwd-l2-rebuild.so');
    copyFileSync(stageA, stageB);
    // the controls' stage: a third copy, never swapped in, so each lib/check maps and unmaps it
    // as a swap's dlopen would (a loaded object would only be counted again)
    const stageC = join(bed.dir, 'hitless-fwd-l2-checked.so');
    copyFileSync(stageA, stageC);
    const [uplink] = bed.veth();
    const gen = await bed.dp('W', { uplink, extraArgs: ['--fwd-lib', stageA] });
    const vms = labVms(nVms);
    const perVm = Math.max(1, Math.floor(totalPps / nVms));
    const probe = await bed.probe({
      name: 'swap',
      vms: await gen.serve(vms),
      flows: vms.map((v, i) => ({ src: v.name, dst: vms[(i + 1) % vms.length]!.name, pps: perVm })),
      durationS: 3600,
      gapUs: GAP_US,
    });
    const hosts = Array.from({ length: learned }, (_, i) => ({
      mac: `02:fd:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`,
      kind: 'learned' as const,
      port: 'uplink',
    }));
    await gen.ctl.request(dp.fdbImport, { entries: hosts });
    await sleep(1000);
    const record = (r: SwapResult, into: number[]): void => {
      into.push(r.window_ns / 1000);
      swaps.push({ kind: r.converted_by ? `layout ${r.from.layout}->${r.to.layout}` : 'same layout', at_ns: r.at_ns });
      waitUs.push(r.wait_ns / 1000);
      migrated.push(r.migrated);
      for (const v of vms) {
        windows.push({ vm: v.name, start_ns: r.at_ns, end_ns: r.at_ns + r.window_ns });
        placebo.push({ vm: v.name, start_ns: r.at_ns - 25e6, end_ns: r.at_ns - 25e6 + r.window_ns });
      }
    };
    const nowNs = (): number => Number(process.hrtime.bigint()); // CLOCK_MONOTONIC, as the probe's
    // the cadence: each swap; 50 ms later a lib/check (a control); 50 ms later the next stage's
    // lib/load (the prepare step, as an operator's would be); 50 ms later the next swap, which
    // only switches (the idle control sits 25 ms before it)
    const step = async (next: string | null): Promise<void> => {
      await sleep(50);
      const t0 = nowNs();
      await gen.ctl.request(dp.libCheck, { path: stageC });
      const t1 = nowNs();
      for (const v of vms) checks.push({ vm: v.name, start_ns: t0, end_ns: t1 });
      await sleep(50);
      if (next !== null) {
        const l0 = performance.now();
        await gen.ctl.request(dp.libLoad, { path: next });
        loadMs.push(performance.now() - l0);
      }
      await sleep(50);
    };
    const swap = async (path: string, into: number[]): Promise<void> => {
      const r = await gen.ctl.request(dp.libSwap, { path });
      if (!r.preloaded) throw new Error(`${path} was not preloaded`);
      record(r, into);
    };
    await gen.ctl.request(dp.libLoad, { path: stageB });
    await sleep(50);
    for (let r = 0; r < rounds; r++) {
      await swap(stageB, sameUs);
      await step(stageA);
      await swap(stageA, sameUs);
      await step(LAYOUT1);
      await swap(LAYOUT1, changeUs);
      await step(null); // lib/rollback returns to the stage it keeps loaded
      record(await gen.ctl.request(dp.libRollback, {}), changeUs);
      await step(stageB);
      console.error(`round ${r + 1}/${rounds}: ${sameUs.length + changeUs.length} swaps so far`);
    }
    await sleep(500);
    const sum = await probe.stop();
    const a = attribute(gapsOf(probe.events), windows, GAP_US);
    // one swap moves every VM: its gap is the worst over all of them
    const perSwap: number[] = [];
    for (let i = 0; i < a.event_gap_ms.length; i += nVms) perSwap.push(Math.max(...a.event_gap_ms.slice(i, i + nVms)));
    const below = perSwap.filter((g) => g <= GAP_US / 1000).length;
    // the three worst: which swap, which flow, and where the gap sat relative to the switch
    const gapEvents = probe.events.flatMap((e) => (e.event === 'gap' ? [e.data] : []));
    const worst = perSwap
      .map((g, i) => ({ g, i }))
      .sort((x, y) => y.g - x.g)
      .slice(0, 3)
      .filter((x) => x.g > GAP_US / 1000)
      .map(({ g, i }) => {
        const sw = swaps[i]!;
        const ev = gapEvents.find((e) => e.gap_us / 1000 === g && e.start_ns <= sw.at_ns + 2e6 && e.end_ns >= sw.at_ns - 2e6);
        return { swap: i, kind: sw.kind, gap_ms: g, flow: ev ? `${ev.src}->${ev.rx_vm}` : '?', starts_ms_before_switch: ev ? r2((sw.at_ns - ev.start_ns) / 1e6) : null };
      });
    const worstPer = (ws: EventWindow[]): number[] => {
      const g = attribute(gapsOf(probe.events), ws, GAP_US).event_gap_ms;
      const out: number[] = [];
      for (let i = 0; i < g.length; i += nVms) out.push(Math.max(...g.slice(i, i + nVms)));
      return out;
    };
    const perPlacebo = worstPer(placebo);
    const perCheck = worstPer(checks);
    const bg = background(a.background_gap_ms);
    const linkEvents = probe.events.filter((e) => e.event === 'link').length;
    const all = [...sameUs, ...changeUs];
    const result = {
      mode: 'swap',
      vms: nVms,
      pps_total: perVm * nVms,
      switches: all.length,
      lost: sum.totals.lost,
      dup: sum.totals.dup,
      frontend_events: linkEvents,
      window_us: pct(all),
      window_parts_us: { same_layout: pct(sameUs), layout_change: pct(changeUs), wait_for_loop: pct(waitUs) },
      preload_ms: pct(loadMs),
      fdb_entries_converted: Math.max(...migrated),
      gap_ms: pct(perSwap),
      gaps_ms: perSwap.map(r2),
      gap_below_threshold: below,
      worst_gaps: worst,
      placebo_gap_ms: pct(perPlacebo),
      placebo_below_threshold: perPlacebo.filter((g) => g <= GAP_US / 1000).length,
      check_gap_ms: pct(perCheck),
      check_below_threshold: perCheck.filter((g) => g <= GAP_US / 1000).length,
      gap_threshold_ms: GAP_US / 1000,
      background_gap_ms: bg,
      offered: sum.totals.offered,
      seconds: r2(sum.duration_s),
    };
    finish('swap', [
      `${nVms} VMs, ${result.pps_total} pps in all, ${all.length} stage swaps inside one generation ` +
        `(${sameUs.length} same-layout, ${changeUs.length} layout 2<->1 converting ${result.fdb_entries_converted} FDB entries), stock virtio_user frontends.`,
      '',
      `- lost ${result.lost}, duplicated ${result.dup}, link events at the frontends ${linkEvents} (of ${result.offered} frames offered)`,
      `- loop window (forwarding stopped): p50 ${result.window_us.p50} us, p99 ${result.window_us.p99} us, max ${result.window_us.max} us`,
      `  same layout: p50 ${result.window_parts_us.same_layout.p50} us, p99 ${result.window_parts_us.same_layout.p99} us; ` +
        `layout change: p50 ${result.window_parts_us.layout_change.p50} us, p99 ${result.window_parts_us.layout_change.p99} us`,
      `  (the request waited for the loop's next iteration, forwarding meanwhile: p50 ${result.window_parts_us.wait_for_loop.p50} us)`,
      `- lib/load of the next stage before each swap (the prepare step, outside the break): p50 ${result.preload_ms.p50} ms, max ${result.preload_ms.max} ms`,
      `- receive gap charged to a swap: p50 ${result.gap_ms.p50} ms, p99 ${result.gap_ms.p99} ms, max ${result.gap_ms.max} ms ` +
        `(${below} of ${all.length} swaps left no gap over ${GAP_US / 1000} ms on any flow; they count as ${GAP_US / 1000} ms)`,
      `  worst: ${worst.map((w) => `#${w.swap} (${w.kind}) ${w.gap_ms} ms on ${w.flow}, starting ${w.starts_ms_before_switch} ms before the switch`).join('; ') || 'none over the threshold'}`,
      `- control, idle (the same windows 25 ms before each swap, nothing happening): p50 ${result.placebo_gap_ms.p50} ms, p99 ${result.placebo_gap_ms.p99} ms, ` +
        `max ${result.placebo_gap_ms.max} ms (${result.placebo_below_threshold} of ${perPlacebo.length} with no gap over ${GAP_US / 1000} ms)`,
      `- control, lib/check of a stage (the control plane's work, no switch): p50 ${result.check_gap_ms.p50} ms, p99 ${result.check_gap_ms.p99} ms, ` +
        `max ${result.check_gap_ms.max} ms (${result.check_below_threshold} of ${perCheck.length} with no gap over ${GAP_US / 1000} ms)`,
      `- background gaps of the same run (no swap near): ${bg.count}, p99 ${bg.p99 ?? '-'} ms, max ${bg.max ?? '-'} ms`,
    ], result);
  } finally {
    await bed.cleanup();
  }
}

run('swap', main);
