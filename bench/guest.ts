// bench/run guest [--quick] [--layout client|server] [--queues N] [--handoffs N] [--pps N]
//
// Live handoff of a real QEMU guest (Linux virtio-net, TCG) through the keeper between two
// generations, measured through the guest: a probe VM sends numbered frames to the guest, which
// sends each back on the queue pair it came in on; every frame must return once. With several
// queue pairs (one vCPU each) 16 flows, told apart by UDP port, spread over them. Half the handoffs come after a device reset
// (the guest's driver reloaded inside the session). Reports lost/duplicated frames, the guest's
// carrier changes and kernel warnings, the keeper's window and the receive gap charged to each
// handoff beside the background gaps of the same run.
import { keeper } from '../protocol/native/keeper.js';
import { attribute, type EventWindow } from '../protocol/measure.js';
import { gapsOf } from '../protocol/native/probe.js';
import { Testbed } from '../testing/testbed.js';
import { guestKernel } from '../lab/src/guest.js';
import { background, finish, numOpt, pct, quick, run, sleep } from './lib.js';

const argv = process.argv.slice(2);
const layout = argv.includes('--layout') ? argv[argv.indexOf('--layout') + 1] : 'client';
if (layout !== 'client' && layout !== 'server') {
  console.error('bench guest: --layout is client or server');
  process.exit(2);
}
const nHandoffs = numOpt('guest', '--handoffs', quick ? 10 : 40);
const queues = numOpt('guest', '--queues', 2);
const flows = queues > 1 ? 16 : 1;
// a TCG guest's own scheduling jitter is a few ms: gaps below are noise; with 16 flows of
// 100 frames/s each (multi-queue), frames of a flow are 10 ms apart
const GAP_US = flows > 1 ? 25000 : 5000;
const perFlowPps = numOpt('guest', '--pps', flows > 1 ? 100 : 1000); // per flow

async function main(): Promise<void> {
  const bed = new Testbed('bench-guest');
  const windows: EventWindow[] = [];
  const windowUs: number[] = [];
  const gaps: ReturnType<typeof gapsOf> = [];
  let lost = 0;
  let dup = 0;
  let offered = 0;
  let resets = 0;
  try {
    const h = await bed.guestHost({ server: layout === 'server', queues });
    const ready = h.guest.events.find((e) => e.event === 'ready');
    const runQueues = ready?.event === 'ready' ? ready.queues : 0;
    let at: 'A' | 'B' = 'A';
    for (const phase of [0, 1]) {
      if (phase === 1) {
        await h.guest.reload(); // a device reset inside the session, between measured phases
        resets++;
      }
      const probe = await bed.reflectProbe(h, perFlowPps, { gapUs: GAP_US, flows });
      await sleep(500);
      const n = phase === 0 ? Math.ceil(nHandoffs / 2) : Math.floor(nHandoffs / 2);
      for (let i = 0; i < n; i++) {
        const to: 'A' | 'B' = at === 'A' ? 'B' : 'A';
        await h.k.ctl.request(keeper.sessionPreload, { vm: h.vm, gen: to });
        await sleep(100);
        const r = await h.k.ctl.request(keeper.handoffStart, { vm: h.vm, gen: to });
        // charged to the probe VM: the measured flow is its round trip through the guest
        windows.push({ vm: h.probeVm.name, start_ns: r.timing.quiesce_ns, end_ns: r.timing.resumed_ns });
        windowUs.push(r.timing.window_ns / 1000);
        at = to;
        await sleep(200);
      }
      await sleep(500);
      const sum = await probe.stop();
      lost += sum.totals.lost;
      dup += sum.totals.dup;
      offered += sum.totals.offered;
      gaps.push(...gapsOf(probe.events));
    }
    const perQueue = (await h.guest.stats()).reflected_per_queue;
    // carrier changes on the console (the driver's own bring-up after a reload is not one)
    const ev = h.guest.evidence();
    const linkEvents = ev.carrier_events;
    const a = attribute(gaps, windows, GAP_US);
    const bg = background(a.background_gap_ms);
    const result = {
      frontend: 'qemu',
      layout,
      queues: runQueues,
      reflected_per_queue: perQueue,
      handoffs: windows.length,
      resets,
      lost,
      dup,
      offered,
      guest_link_events: linkEvents,
      guest_kernel_warnings: ev.kernel_warnings.length,
      guest_other_warnings: ev.other_warnings.length,
      window_us: pct(windowUs),
      gap_ms: pct(a.event_gap_ms),
      gap_below_threshold: a.below_threshold,
      gap_threshold_ms: GAP_US / 1000,
      background_gap_ms: bg,
    };
    finish('guest', [
      `QEMU 7.2 (TCG) guest with Linux ${guestKernel()} virtio-net, ${layout === 'server' ? 'QEMU the vhost-user server' : 'QEMU the vhost-user client'}, ` +
        `${windows.length} handoffs A<->B (half after a driver reload), ${flows} flow(s) of ${perFlowPps} frames/s reflected by the guest.`,
      '',
      `- lost ${lost}, duplicated ${dup} of ${offered} frames sent through the guest; ${runQueues} queue pairs, frames sent back per queue pair: ${perQueue.join(', ')}`,
      `- guest: ${linkEvents} carrier changes beside its own resets, ${ev.kernel_warnings.length} kernel warnings about its network path${ev.kernel_warnings.length ? `: ${ev.kernel_warnings.join(' | ')}` : ''}; ` +
        `other warnings (the emulation's): ${ev.other_warnings.length ? ev.other_warnings.join(' | ') : 'none'}`,
      `- keeper window (quiesce -> resume): p50 ${result.window_us.p50} us, p99 ${result.window_us.p99} us, max ${result.window_us.max} us`,
      `- round-trip gap charged to a handoff: p50 ${result.gap_ms.p50} ms, p99 ${result.gap_ms.p99} ms, max ${result.gap_ms.max} ms ` +
        `(${a.below_threshold} of ${windows.length} left no gap over ${GAP_US / 1000} ms; they count as ${GAP_US / 1000} ms)`,
      `- background gaps of the same run (no handoff near): ${bg.count}, p99 ${bg.p99 ?? '-'} ms, max ${bg.max ?? '-'} ms`,
    ], result);
  } finally {
    await bed.cleanup();
  }
}

run('guest', main);
