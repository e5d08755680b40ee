// bench/run handoff [--quick] [--vms N] [--pps TOTAL | --pps-per-vm N[,N...]] [--queues Q]
//                   [--one-way] [--guest-mem MB[,MB...]] [--rounds R] [--split] [--datapath hitless-dp|ovs]
//                   [--contention] [--rt-prio N] [--no-isolate]
//
// The benchmark and all it starts run off the packet loops' CPU (1), as a host's housekeeping
// is kept off its vSwitch cores (--no-isolate: anywhere).
// --guest-mem guests have written all but 64 MB of their memory (probe --touch-memory), as a
// guest that has run a while has: the target maps every page of it ahead of the switch.
// --pps-per-vm: what each VM sends (over all its queues); several: one run per rate, each on a
// fresh host, and the highest rate that lost nothing. --one-way: only every other VM sends at
// that rate, the others send 10 000 pps back (a witness of that direction). --queues Q: Q queue pairs per VM, a flow
// on each. --guest-mem: the VMs' memory in MB (the probe's: virtio_user shares all of it with
// the backend); several: one run per size, and how the window grew from the smallest to the
// largest. Rings hold 1024 entries at both ends (probe and generation), ~1 ms at 1 Mpps.
//
// --contention: after the handoffs on the idle machine, the same handoffs again with a busy
// neighbour (a busy loop pinned to each CPU at normal priority, as a busy-polling process on
// the housekeeping cores is), in the same run; both are reported. --rt-prio N: the keeper's and
// the generations' real-time priority (0: none; default: theirs).
//
// --datapath ovs: the generations are stock OVS-DPDK (ovs-vswitchd each, ports
// dpdkvhostuserclient to the keeper's sockets, joined by a memif peer link with per-VM
// fast-failover groups; DESIGN §12) instead of hitless-dp.
//
// --split: the host is split first (every other VM on B, so every flow crosses the peer link),
// then the VMs on A are handed A->B->A while their peers stay on B; reports reordered frames
// and the receive-gap rate of the split state beside that of all VMs on one generation, both
// measured in the same run with no handoff under way.
//
// Live handoff through the keeper with stock frontends (virtio_user): N probe VMs on one host
// with a ring of flows (TOTAL pps in all), each VM handed A->B->A R times, one at a time, the
// rest of the host's traffic flowing. Reports lost/duplicated frames and link events at the
// frontends (exact), the keeper's control-plane window (quiesce -> resume, measured inside the
// keeper), and the receive gap charged to each handoff beside the background gaps of the same
// run (scheduler noise on 2 shared cores).
import { HELD_STEPS, type HeldStep } from '../agent/src/native/ovs.js';
import { keeper } from '../protocol/native/keeper.js';
import { dp } from '../protocol/native/dp.js';
import { ovsSwitch, Testbed, type OvsHost, type UpgradeHost } from '../testing/testbed.js';
import { attribute, touches, type EventWindow } from '../protocol/measure.js';
import { gapsOf, probe as probeCmd, type ProbeEvent } from '../protocol/native/probe.js';
import { background, finish, isolateLoopCpu, numListOpt, numOpt, pct, quick, round2 as r2, run, sleep } from './lib.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';

const nVms = numOpt('handoff', '--vms', quick ? 4 : 8);
const totalPps = numOpt('handoff', '--pps', 50000);
if (process.argv.includes('--pps') && process.argv.includes('--pps-per-vm')) {
  console.error('bench/run handoff: --pps (in all) or --pps-per-vm (each VM), not both');
  process.exit(2);
}
const rates = numListOpt('handoff', '--pps-per-vm', [Math.max(1, Math.floor(totalPps / nVms))]);
const queues = numOpt('handoff', '--queues', 1);
if (queues > 8) {
  console.error('bench/run handoff: --queues: 1 to 8 queue pairs');
  process.exit(2);
}
const oneWay = process.argv.includes('--one-way');
const ONE_WAY_WITNESS_PPS = 10000; // 100 us apart: well inside the 0.5 ms gap threshold
const GUEST_OWN_MB = 64; // of a --guest-mem guest: its own buffers and rings; the rest it has written
const mems = numListOpt('handoff', '--guest-mem', [0]); // 0: the test bed's default (128 MB per 8 VMs)
if (rates.length > 1 && mems.length > 1) {
  console.error('bench/run handoff: several --pps-per-vm or several --guest-mem, not both');
  process.exit(2);
}
const rounds = numOpt('handoff', '--rounds', quick ? 3 : 5);
const GAP_US = 500;
const split = process.argv.includes('--split');
const QUIET_MS = quick ? 2000 : 5000; // each gap-rate sample (split mode)
const contention = process.argv.includes('--contention');
const rtAt = process.argv.indexOf('--rt-prio');
const rtPrio = rtAt > 0 ? Number(process.argv[rtAt + 1]) : undefined;
if (rtPrio !== undefined && !(Number.isInteger(rtPrio) && rtPrio >= 0 && rtPrio <= 99)) {
  console.error('bench/run handoff: --rt-prio: 0 (none) to 99');
  process.exit(2);
}
const dpArg = process.argv.indexOf('--datapath');
const datapath = dpArg > 0 ? process.argv[dpArg + 1] : 'hitless-dp';
if (datapath !== 'hitless-dp' && datapath !== 'ovs') {
  console.error(`bench/run handoff: --datapath: hitless-dp or ovs, not ${datapath}`);
  process.exit(2);
}

/** Frames lost near the handoffs of a case: refused by the sender's ring, or missing across a
 * receive gap charged to a handoff. */
function nearLoss(r: Record<string, unknown>): number {
  const refused = r.refused as { near_handoffs: number };
  const missing = r.missing_in_gaps as { near_handoffs: number };
  return refused.near_handoffs + missing.near_handoffs;
}

/** Frames the senders' full rings refused, split by when: during (or within the attribution
 * margin of) a handoff of the sending VM, or with none near. */
function refusedWhen(events: ProbeEvent[], windows: EventWindow[]): { near_handoffs: number; background: number } {
  let near = 0;
  let bg = 0;
  for (const e of events) {
    if (e.event !== 'refused') continue;
    if (windows.some((w) => w.vm === e.data.src && touches(e.data, w))) near += e.data.frames;
    else bg += e.data.frames;
  }
  return { near_handoffs: near, background: bg };
}

/** A phase's figures: windows and their parts, the receive gaps charged to its handoffs. */
type Phase = { windows: EventWindow[]; windowUs: number[]; preloadMs: number[]; prefaultMs: number[]; prefaultPages: number[]; stopUs: number[]; startUs: number[] };
const newPhase = (): Phase => ({ windows: [], windowUs: [], preloadMs: [], prefaultMs: [], prefaultPages: [], stopUs: [], startUs: [] });

function phaseFigures(ph: Phase, gaps: ReturnType<typeof gapsOf>, neighbours: number) {
  const a = attribute(gaps, ph.windows, GAP_US);
  return {
    neighbours: `${neighbours} busy loops, one pinned to each CPU, normal priority`,
    handoffs: ph.windows.length,
    // frames missing across the receive gaps of this phase (the run's exact loss is lost, above)
    missing_in_gaps: gaps.reduce((n, g) => n + (g.lost_in_gap ?? 0), 0),
    window_us: pct(ph.windowUs),
    window_parts_us: { stop_old: pct(ph.stopUs), start_new: pct(ph.startUs) },
    gap_ms: pct(a.event_gap_ms),
    preload_ms: pct(ph.preloadMs),
  };
}

interface Case {
  perVm: number;
  memMb: number;
}
/** One case's figures and its report lines. */
interface Outcome {
  result: Record<string, unknown> & { lost: number; window_us: ReturnType<typeof pct> };
  report: string[];
}

async function main(): Promise<void> {
  const housekeeping = isolateLoopCpu(1);
  const cases: Case[] = rates.flatMap((perVm) => mems.map((memMb) => ({ perVm, memMb })));
  const outcomes: Outcome[] = [];
  for (const c of cases) {
    if (cases.length > 1) console.error(`case ${outcomes.length + 1}/${cases.length}: ${c.perVm} pps per VM${c.memMb ? `, ${c.memMb} MB guests` : ''}`);
    outcomes.push(await one(c));
  }
  const options = {
    datapath: datapath === 'ovs' ? 'ovs-dpdk' : 'hitless-dp',
    vms: nVms,
    queues,
    rounds,
    ring_entries: 1024,
    contention,
    split,
    one_way: oneWay,
    rt_prio: rtPrio ?? 'default',
    housekeeping_cpus: housekeeping ?? 'all',
  };
  if (outcomes.length === 1) {
    finish('handoff', outcomes[0]!.report, { options, ...outcomes[0]!.result });
    return;
  }
  // several cases: each one's figures, then what they say together
  const summary: string[] = [];
  let across: Record<string, unknown>;
  if (rates.length > 1) {
    // the highest rate up to which every rate (ascending) lost nothing: over the whole run, or
    // near a handoff (what is lost with no handoff near, the same rate loses on this machine
    // without any)
    const upTo = (ok: (o: Outcome) => boolean): number | null => {
      let best: number | null = null;
      for (const o of [...outcomes].sort((x, y) => (x.result.pps_per_vm as number) - (y.result.pps_per_vm as number))) {
        if (!ok(o)) break;
        best = o.result.pps_per_vm as number;
      }
      return best;
    };
    const clean = upTo((o) => o.result.lost === 0);
    const nearClean = upTo((o) => nearLoss(o.result) === 0);
    across = { highest_zero_loss_pps_per_vm: clean, highest_zero_handoff_loss_pps_per_vm: nearClean };
    summary.push(
      `Highest rate per VM up to which every rate lost 0 over the whole run: ${clean ?? 'none'} pps; 0 near a handoff (refused by the sender's ring or missing across a gap charged to one): ${nearClean ?? 'none'} pps (rings of 1024 entries).`,
    );
  } else {
    const first = outcomes[0]!.result.window_us;
    const last = outcomes.at(-1)!.result.window_us;
    const growth = (a: number | null, b: number | null) => (a && b !== null ? r2(((b - a) / a) * 100) : null);
    across = { window_growth_pct: { p50: growth(first.p50, last.p50), p99: growth(first.p99, last.p99) }, from_mb: mems[0], to_mb: mems.at(-1) };
    summary.push(`Window from ${mems[0]} MB to ${mems.at(-1)} MB guests: p50 ${first.p50} -> ${last.p50} us (${growth(first.p50, last.p50)}%), p99 ${first.p99} -> ${last.p99} us (${growth(first.p99, last.p99)}%).`);
  }
  finish('handoff', [...summary, '', ...outcomes.flatMap((o) => [...o.report, ''])], { options, ...across, cases: outcomes.map((o) => o.result) });
}

async function one(c: Case): Promise<Outcome> {
  const bed = new Testbed('bench-handoff', rtPrio === undefined ? {} : { rtPrio });
  // the idle phase's figures (the --contention phase has its own)
  const idle = newPhase();
  const { windows, windowUs, preloadMs, stopUs, startUs } = idle;
  // an OVS switch's break, step by step (heldSwitch): how long each step took, from the end of the one before
  const stepMs = Object.fromEntries(HELD_STEPS.slice(1).map((s) => [s, [] as number[]])) as Record<Exclude<HeldStep, 'begin'>, number[]>;
  try {
    const perVm = c.perVm;
    // long enough for every handoff plus settling; the probe is stopped when we are done
    // (with queues, a flow on each: each at its share of the VM's rate)
    const opts = { vms: nVms, pps: Math.max(1, Math.floor(perVm / queues)), durationS: 3600, gapUs: GAP_US, queues: queues > 1 ? queues : undefined, guestMemMb: c.memMb || undefined, guestTouchMb: c.memMb ? Math.max(0, c.memMb - GUEST_OWN_MB) : undefined };
    if (datapath === 'ovs' && (queues > 1 || c.memMb)) throw new Error('--queues and --guest-mem: hitless-dp generations only');
    const h = datapath === 'ovs' ? await bed.ovsHost(opts) : await bed.upgradeHost(opts);
    if (oneWay) {
      // every other VM sends only a witness rate back: half the VMs send at the rate, the
      // other half receive it
      const flows = (await h.probe.ctl!.request(probeCmd.statsShow, {})).flows;
      for (const f of flows) if (h.vms.indexOf(f.src) % 2 === 1) await h.probe.ctl!.request(probeCmd.flowSet, { flow: `${f.src}:${f.dst}`, pps: ONE_WAY_WITNESS_PPS });
    }
    await sleep(1000);
    // split mode: gaps per second with every VM on A, then with the host split (no handoff in
    // either sample), then handoffs of the VMs on A only while their peers are on B
    const gapCount = () => h.probe.events.filter((e) => e.event === 'gap').length;
    const rate = async () => {
      const n0 = gapCount();
      await sleep(QUIET_MS);
      return ((gapCount() - n0) * 1000) / QUIET_MS;
    };
    let sameRate: number | null = null;
    let splitRate: number | null = null;
    const movers = split ? h.vms.filter((_, i) => i % 2 === 0) : h.vms;
    if (split) {
      sameRate = await rate();
      for (const vm of h.vms.filter((_, i) => i % 2 === 1)) {
        await h.k.ctl.request(keeper.sessionPreload, { vm, gen: 'B' });
        await h.k.ctl.request(keeper.handoffStart, { vm, gen: 'B' });
      }
      await sleep(500);
      splitRate = await rate();
    }
    // one phase: every mover handed A->B->A, rounds times; the windows it made and where they went
    // stopUs: the old generation stops the rings (GET_VRING_BASE, incl. its drain); startUs: the
    // new one gets positions, enable, status (acked)
    const handoffs = async (into: Phase) => {
      for (let r = 0; r < rounds; r++) {
        for (const to of ['B', 'A']) {
          for (const vm of movers) {
            // pre-load first (the target maps guest memory), then switch: as an operator's
            // prepare step would, so the break holds only the switch itself
            // (an OVS generation as the agent moves a VM to it: busy-polling through the switch)
            let pre, res;
            if (datapath === 'ovs') {
              const at = new Map<HeldStep, number>();
              ({ preload: pre, handoff: res } = await ovsSwitch(h as OvsHost, vm, to as 'A' | 'B', 50, (s) => at.set(s, performance.now())));
              HELD_STEPS.forEach((s, i) => i > 0 && stepMs[s as Exclude<HeldStep, 'begin'>].push(at.get(s)! - at.get(HELD_STEPS[i - 1]!)!));
            }
            else {
              pre = await h.k.ctl.request(keeper.sessionPreload, { vm, gen: to });
              await sleep(50);
              // the target maps the guest's touched memory ahead (dp prefault.c): the switch
              // waits for that, as an operator's approval would, and its time is its own
              const target = to === 'B' ? (h as UpgradeHost).b : (h as UpgradeHost).a;
              for (let t = Date.now(); ; await sleep(10)) {
                const pf = (await target.ctl.request(dp.statsShow, { vm })).vms[vm]?.prefault;
                if (pf?.done) {
                  into.prefaultMs.push(pf.ms);
                  into.prefaultPages.push(pf.pages);
                  break;
                }
                if (Date.now() - t > 60000) throw new Error(`${vm}: generation ${to} did not map its guest memory within 60 s`);
              }
              res = await h.k.ctl.request(keeper.handoffStart, { vm, gen: to });
            }
            into.preloadMs.push(pre.took_ns / 1e6);
            into.windows.push({ vm, start_ns: res.timing.quiesce_ns, end_ns: res.timing.resumed_ns });
            into.windowUs.push(res.timing.window_ns / 1000);
            into.stopUs.push((res.timing.bases_ns - res.timing.quiesce_ns) / 1000);
            into.startUs.push((res.timing.replayed_ns - res.timing.bases_ns) / 1000);
            await sleep(100);
          }
        }
        console.error(`round ${r + 1}/${rounds}: ${into.windows.length} handoffs so far`);
      }
    };
    await handoffs(idle);
    // the same handoffs with a busy neighbour on every CPU, in the same run
    let busy: ReturnType<typeof phaseFigures> | null = null;
    let busyFrom: number | null = null; // CLOCK_MONOTONIC ns, the probe's clock
    if (contention) {
      busyFrom = Number(process.hrtime.bigint());
      const neighbours: ChildProcess[] = cpus().map((_, c) => spawn('taskset', ['-c', String(c), 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' }));
      const ph = newPhase();
      try {
        await sleep(500);
        await handoffs(ph);
        await sleep(500);
      } finally {
        for (const n of neighbours) n.kill('SIGKILL');
      }
      await sleep(500);
      busy = phaseFigures(ph, gapsOf(h.probe.events).filter((g) => g.start_ns >= busyFrom!), neighbours.length);
    }
    await sleep(500);
    const sum = await h.probe.stop();
    // the idle phase's gaps (the busy phase's are its own)
    const a = attribute(gapsOf(h.probe.events).filter((g) => busyFrom === null || g.start_ns < busyFrom), windows, GAP_US);
    const bg = background(a.background_gap_ms);
    const linkEvents = h.probe.events.filter((e) => e.event === 'link').length;
    const perFlow = Math.max(1, Math.floor(perVm / queues));
    const result = {
      datapath: datapath === 'ovs' ? 'ovs-dpdk' : 'hitless-dp',
      vms: nVms,
      pps_per_vm: perFlow * queues,
      pps_total: oneWay ? Math.ceil(nVms / 2) * perFlow * queues + Math.floor(nVms / 2) * ONE_WAY_WITNESS_PPS * queues : perFlow * queues * nVms,
      queues,
      guest_mem_mb: c.memMb || 128 * Math.ceil(nVms / 8),
      handoffs: windows.length,
      // the whole run's (both phases with --contention): exact, from the probe's summary
      lost: sum.totals.lost,
      // where they went: never sent (the VM's transmit ring was full: no generation read it for
      // longer than the ring lasts), or sent and not received (in a generation, a link, a ring)
      lost_parts: {
        refused_by_sender_ring: Object.values(sum.vms).reduce((n, v) => n + v.tx_refused, 0),
        after_sending: sum.totals.lost - Object.values(sum.vms).reduce((n, v) => n + v.tx_refused, 0),
      },
      // and when: frames missing across the receive gaps charged to a handoff and across the
      // others (background: no handoff near); the sender's refusals likewise (idle phase)
      missing_in_gaps: { near_handoffs: a.event_missing, background: a.background_missing },
      refused: refusedWhen(h.probe.events, windows),
      rx_nombuf: Object.values(sum.vms).reduce((n, v) => n + v.rx_nombuf, 0),
      dup: sum.totals.dup,
      reordered: sum.totals.reordered,
      ...(split ? { split: true, gap_rate_per_s: { same_generation: sameRate, split: splitRate }, gap_rate_window_ms: QUIET_MS } : {}),
      frontend_events: linkEvents,
      window_us: pct(windowUs),
      window_parts_us: { stop_old: pct(stopUs), start_new: pct(startUs) },
      gap_ms: pct(a.event_gap_ms),
      gaps_ms: a.event_gap_ms.map(r2),
      gap_below_threshold: a.below_threshold,
      gap_threshold_ms: GAP_US / 1000,
      background_gap_ms: bg,
      preload_ms: pct(preloadMs),
      // the target mapping the guest's touched memory ahead (after the pre-load, before the switch)
      prefault_ms: pct(idle.prefaultMs),
      prefault_pages: pct(idle.prefaultPages),
      ...(datapath === 'ovs' ? { steps_ms: Object.fromEntries(Object.entries(stepMs).map(([k, v]) => [k, pct(v)])) } : {}),
      offered: sum.totals.offered,
      seconds: r2(sum.duration_s),
      // what the senders offered, on average over the run (the generator's own limit shows
      // here when it is below pps_total)
      offered_pps: Math.round(sum.totals.offered / sum.duration_s),
      ...(busy ? { contention: busy } : {}),
    };
    const report = [
      `${result.datapath} generations, ${nVms} VMs of ${result.guest_mem_mb} MB, ${queues} queue pair${queues > 1 ? 's' : ''} each, ${result.pps_per_vm} pps per ${oneWay ? 'sending ' : ''}VM (${result.pps_total} in all${oneWay ? `: every other VM sends ${ONE_WAY_WITNESS_PPS} pps back` : ''}), ${windows.length} handoffs (each VM A->B->A x${rounds}), stock virtio_user frontends, rings of 1024.`,
      '',
      ...(split
        ? [
            `Split host: the even-numbered VMs handed over while the odd-numbered ones (their flows' other ends) stay on B.`,
            `- receive gaps over ${GAP_US / 1000} ms per second, no handoff under way: all VMs on one generation ${sameRate}, split across both ${splitRate} (${QUIET_MS / 1000} s each, same run)`,
          ]
        : []),
      `- offered ${result.offered_pps} pps in all on average over ${result.seconds} s (asked: ${result.pps_total})`,
      `- lost ${result.lost}, duplicated ${result.dup}, reordered ${result.reordered}, link events at the frontends ${linkEvents} (of ${result.offered} frames offered)`,
      `  of the lost: ${result.lost_parts.refused_by_sender_ring} refused by the sending VM's full transmit ring, ${result.lost_parts.after_sending} lost after leaving it; receive buffers the VMs could not post: ${result.rx_nombuf}`,
      `  missing across receive gaps charged to a handoff: ${a.event_missing}; across background gaps (no handoff near): ${a.background_missing}${busy ? ' (idle phase)' : ''}`,
      `  refused by the sender's ring during or next to a handoff of that VM: ${result.refused.near_handoffs}; with no handoff of it near: ${result.refused.background}`,
      `- control-plane window (quiesce -> resume): p50 ${result.window_us.p50} us, p99 ${result.window_us.p99} us, max ${result.window_us.max} us`,
      `  of which the old generation stopping the rings (GET_VRING_BASE incl. its drain): p50 ${result.window_parts_us.stop_old.p50} us, ` +
        `p99 ${result.window_parts_us.stop_old.p99} us; the new one starting them: p50 ${result.window_parts_us.start_new.p50} us, p99 ${result.window_parts_us.start_new.p99} us`,
      `- receive gap charged to a handoff: p50 ${result.gap_ms.p50} ms, p99 ${result.gap_ms.p99} ms, max ${result.gap_ms.max} ms ` +
        `(${a.below_threshold} of ${windows.length} handoffs left no gap over ${GAP_US / 1000} ms; they count as ${GAP_US / 1000} ms)`,
      `- pre-load (before each switch, outside the break): p50 ${result.preload_ms.p50} ms, max ${result.preload_ms.max} ms; then the target mapping the guest's touched memory: p50 ${result.prefault_ms.p50} ms, max ${result.prefault_ms.max} ms (${result.prefault_pages.p50} pages of 4 KB)`,
      ...(result.steps_ms
        ? [
            `- the switch's steps (each from the end of the one before; the VM receives nothing from 'steered' until the release has begun):`,
            ...Object.entries(result.steps_ms).map(([k, v]) => `  - ${k}: p50 ${v.p50} ms, p99 ${v.p99} ms, max ${v.max} ms`),
          ]
        : []),
      `- background gaps of the same run (no handoff near): ${bg.count}, p99 ${bg.p99 ?? '-'} ms, max ${bg.max ?? '-'} ms`,
      ...(busy
        ? [
            '',
            `The same ${busy.handoffs} handoffs again with ${busy.neighbours}, same run:`,
            `- frames missing across its receive gaps ${busy.missing_in_gaps} (the run's lost, both phases: ${result.lost}); control-plane window p50 ${busy.window_us.p50} us, p99 ${busy.window_us.p99} us, max ${busy.window_us.max} us`,
            `  old generation stopping p50 ${busy.window_parts_us.stop_old.p50} us, p99 ${busy.window_parts_us.stop_old.p99} us; new one starting p50 ${busy.window_parts_us.start_new.p50} us, p99 ${busy.window_parts_us.start_new.p99} us`,
            `- receive gap charged to a handoff: p50 ${busy.gap_ms.p50} ms, p99 ${busy.gap_ms.p99} ms, max ${busy.gap_ms.max} ms`,
          ]
        : []),
      `- keeper and generations' real-time priority: ${rtPrio ?? 'their default (10)'}`,
    ];
    return { result, report };
  } finally {
    await bed.cleanup();
  }
}

run('handoff', main);
