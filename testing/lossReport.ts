// When a test that promises 0 lost frames fails, the failure explains itself: every flow's
// sequence accounting (offered, received, lost, still missing, late, duplicated, reordered) and
// every receive gap with its time and sequence numbers, beside the switches of the same run, all
// on one clock (CLOCK_MONOTONIC, ms from the first switch), so the lost frames can be placed.
import assert from 'node:assert/strict';
import { touches } from '../protocol/measure.js';
import type { Stats } from '../protocol/native/dp.js';
import type { KeeperEvent } from '../protocol/native/keeper.js';
import { measured, type Gap, type ProbeEvent, type ProbeSummary } from '../protocol/native/probe.js';

export interface SwitchMark {
  vm: string;
  label: string;
  start_ns: number;
  end_ns: number;
}

/** The switches a keeper made (handoffs and failovers), from its events. */
export function switchesOf(events: readonly KeeperEvent[]): SwitchMark[] {
  return events.flatMap((e) =>
    e.event === 'handoff/done' || e.event === 'failover/done'
      ? [
          {
            vm: e.data.vm,
            label: `${e.event === 'failover/done' ? 'failover ' : ''}${e.data.from ?? '?'}->${e.data.to} (stop ${((e.data.timing.bases_ns - e.data.timing.quiesce_ns) / 1000).toFixed(0)} us, start ${((e.data.timing.replayed_ns - e.data.timing.bases_ns) / 1000).toFixed(0)} us)`,
            start_ns: e.data.timing.quiesce_ns,
            end_ns: e.data.timing.resumed_ns,
          },
        ]
      : [],
  );
}

const GAPS_LISTED = 8;

export function explainLoss(sum: ProbeSummary, events: readonly ProbeEvent[], switches: readonly SwitchMark[], stats: readonly Stats[] = []): string {
  const gaps = events.flatMap((e) => (e.event === 'gap' ? [e.data] : []));
  const refusals = events.flatMap((e) => (e.event === 'refused' ? [e.data] : []));
  const t0 = Math.min(...switches.map((s) => s.start_ns), ...gaps.map((g) => g.start_ns), ...refusals.map((r) => r.start_ns), Number.MAX_SAFE_INTEGER);
  const at = (ns: number) => `+${((ns - t0) / 1e6).toFixed(3)} ms`;
  // what places the loss first (a long failure message is cut from its middle in CI logs)
  const m = sum.meter;
  const nombuf = Object.entries(sum.vms).filter(([, v]) => v.rx_nombuf > 0);
  const lines = [
    `probe: longest loop stall ${(m.loop_max_stall_us / 1000).toFixed(2)} ms at +${(m.loop_max_stall_at_us / 1000).toFixed(1)} ms of its run, ${m.mbufs_free} mbufs free` +
      (nombuf.length ? `, receive buffers not posted for want of mbufs: ${nombuf.map(([vm, v]) => `${vm} ${v.rx_nombuf}`).join(', ')}` : ''),
    ...stats.map((st, i) => {
      const s = st.loop.stalls;
      return `datapath ${i}: ${s.count} loop stalls of ${s.threshold_us / 1000} ms or more, longest ${(s.max_us / 1000).toFixed(2)} ms at ${at(s.max_at_ns)}; of 10 ms or more: ${s.long.map((k) => `${at(k.start_ns)} for ${(k.dur_us / 1000).toFixed(1)} ms (ran ${(k.ran_us / 1000).toFixed(1)})`).join(', ') || 'none'}`;
    }),
    `refused by the sender's port (${refusals.length}): ${refusals.map((r) => `${r.flow} ${r.frames} (${r.cause}) ${at(r.start_ns)}..${at(r.end_ns)}`).join(', ') || 'none'}`,
    `switches (${switches.length}):`,
    ...switches.map((s) => `  ${s.vm} ${s.label} at ${at(s.start_ns)} for ${((s.end_ns - s.start_ns) / 1000).toFixed(0)} us`),
  ];
  for (const f of measured(sum)) {
    lines.push(`flow ${f.src}->${f.dst}: offered ${f.offered} received ${f.received} lost ${f.lost} missing ${f.missing} late ${f.late} dup ${f.dup} reordered ${f.reordered} tx_refused ${f.tx_refused}`);
    const mine = gaps.filter((x: Gap) => x.flow === `${f.src}:${f.dst}` || (x.src === f.src && x.rx_vm === f.dst));
    // the gaps that skipped frames, then the longest, in time order
    const listed = new Set([...mine.filter((g) => g.lost_in_gap > 0), ...[...mine].sort((a, b) => b.gap_us - a.gap_us)].slice(0, GAPS_LISTED));
    for (const g of mine.filter((x) => listed.has(x))) {
      const near = switches.filter((s) => touches(g, s)).map((s) => `${s.vm} ${s.label}`);
      const seq = g as Gap & { seq_before?: number; seq_after?: number };
      lines.push(`  gap at ${at(g.start_ns)}: ${(g.gap_us / 1000).toFixed(2)} ms, ${g.lost_in_gap} frames skipped (seq ${seq.seq_before ?? '?'} -> ${seq.seq_after ?? '?'})${near.length ? `, touching ${near.join(', ')}` : ', no switch near'}`);
    }
    if (mine.length > listed.size) lines.push(`  (${mine.length - listed.size} shorter gaps that skipped nothing not listed)`);
  }
  const links = events.filter((e) => e.event === 'link');
  if (links.length) lines.push(`link events: ${links.map((e) => JSON.stringify(e.data)).join(' ')}`);
  return lines.join('\n');
}

/** A refused frame is sent again by a real guest's driver (its queue stops while the ring is
 * full); the probe, a sender at a fixed rate, counts it lost. How long after a datapath's
 * stall its guests' rings may still refuse: the loop takes DP_BURST frames a ring per round. */
const AFTER_STALL_NS = 2_000_000;

/** What of a run's loss the datapaths' own starvation does not explain. Explained: frames a
 * sender's full transmit ring refused while a datapath's loop was stalled for 10 ms or more
 * and got less than half of that time on a CPU (the host did not run it; a stall in which it
 * ran is its own fault), with no drop inside any datapath. Everything else is returned, one
 * line each: lost frames that were not refusals, refusals outside every such stall, and the
 * datapaths' drops. */
export function unexplainedLoss(sum: ProbeSummary, events: readonly ProbeEvent[], stats: readonly Stats[]): string[] {
  const out: string[] = [];
  const stalls = stats.flatMap((st) => st.loop.stalls.long.filter((k) => k.ran_us * 2 < k.dur_us));
  for (const f of measured(sum)) if (f.lost !== f.tx_refused) out.push(`${f.src}->${f.dst}: lost ${f.lost}, of which its sender's port refused ${f.tx_refused}`);
  for (const e of events) {
    if (e.event !== 'refused') continue;
    const r = e.data;
    const inStall = r.cause === 'ring_full' && stalls.some((k) => r.start_ns >= k.start_ns && r.end_ns <= k.start_ns + k.dur_us * 1000 + AFTER_STALL_NS);
    if (!inStall) out.push(`${r.flow}: ${r.frames} frames refused (${r.cause}) while no datapath was starved of CPU`);
  }
  const drops = datapathDrops(stats.map((_, i) => String(i)), stats);
  if (drops !== 'datapath drops: none') out.push(drops);
  return out;
}

/** Every drop counter of the generations that are not zero, by generation and VM. */
export function datapathDrops(names: readonly string[], stats: readonly Stats[]): string {
  const out: string[] = [];
  stats.forEach((st, i) => {
    for (const [vm, v] of Object.entries(st.vms)) for (const [k, n] of Object.entries(v.drops)) if (n) out.push(`${names[i]} ${vm} ${k} ${n}`);
    for (const [port, e] of [['uplink', st.uplink], ['peer', st.peer]] as const) if (e && (e.drop_tx || e.drop_no_dest)) out.push(`${names[i]} ${port} drop_tx ${e.drop_tx} no_dest ${e.drop_no_dest}`);
  });
  return out.length ? `datapath drops: ${out.join(', ')}` : 'datapath drops: none';
}

/** The 0-lost assertion of a run whose datapaths' stats are at hand: nothing lost but what
 * starving them of CPU explains (unexplainedLoss); such a loss is said as the test's diagnostic,
 * so a starved run is visible in the log without failing. */
export function assertLossOnlyStarved(t: { diagnostic(msg: string): void }, sum: ProbeSummary, events: readonly ProbeEvent[], stats: readonly Stats[], switches: readonly SwitchMark[] = []): void {
  const why = () => explainLoss(sum, events, switches, stats);
  assert.deepEqual(unexplainedLoss(sum, events, stats), [], why());
  if (sum.totals.lost > 0) t.diagnostic(`lost ${sum.totals.lost} frames while a datapath was given no CPU:\n${why().split('\n').slice(0, stats.length + 2).join('\n')}`);
}
