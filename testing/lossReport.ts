// When a test that promises 0 lost frames fails, the failure explains itself: every flow's
// sequence accounting (offered, received, lost, still missing, late, duplicated, reordered) and
// every receive gap with its time and sequence numbers, beside the switches of the same run, all
// on one clock (CLOCK_MONOTONIC, ms from the first switch), so the lost frames can be placed.
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

export function explainLoss(sum: ProbeSummary, events: readonly ProbeEvent[], switches: readonly SwitchMark[]): string {
  const gaps = events.flatMap((e) => (e.event === 'gap' ? [e.data] : []));
  const t0 = Math.min(...switches.map((s) => s.start_ns), ...gaps.map((g) => g.start_ns), Number.MAX_SAFE_INTEGER);
  const at = (ns: number) => `+${((ns - t0) / 1e6).toFixed(3)} ms`;
  const lines = [`switches (${switches.length}):`, ...switches.map((s) => `  ${s.vm} ${s.label} at ${at(s.start_ns)} for ${((s.end_ns - s.start_ns) / 1000).toFixed(0)} us`)];
  for (const f of measured(sum)) {
    lines.push(`flow ${f.src}->${f.dst}: offered ${f.offered} received ${f.received} lost ${f.lost} missing ${f.missing} late ${f.late} dup ${f.dup} reordered ${f.reordered} tx_refused ${f.tx_refused}`);
    for (const g of gaps.filter((x: Gap) => x.flow === `${f.src}:${f.dst}` || (x.src === f.src && x.rx_vm === f.dst))) {
      const near = switches.filter((s) => touches(g, s)).map((s) => `${s.vm} ${s.label}`);
      const seq = g as Gap & { seq_before?: number; seq_after?: number };
      lines.push(`  gap at ${at(g.start_ns)}: ${(g.gap_us / 1000).toFixed(2)} ms, ${g.lost_in_gap} frames skipped (seq ${seq.seq_before ?? '?'} -> ${seq.seq_after ?? '?'})${near.length ? `, touching ${near.join(', ')}` : ', no switch near'}`);
    }
  }
  const m = sum.meter;
  const nombuf = Object.entries(sum.vms).filter(([, v]) => v.rx_nombuf > 0);
  lines.push(
    `probe: longest loop stall ${(m.loop_max_stall_us / 1000).toFixed(2)} ms at +${(m.loop_max_stall_at_us / 1000).toFixed(1)} ms of its run, ${m.mbufs_free} mbufs free` +
      (nombuf.length ? `, receive buffers not posted for want of mbufs: ${nombuf.map(([vm, v]) => `${vm} ${v.rx_nombuf}`).join(', ')}` : ''),
  );
  const links = events.filter((e) => e.event === 'link');
  if (links.length) lines.push(`link events: ${links.map((e) => JSON.stringify(e.data)).join(' ')}`);
  return lines.join('\n');
}

/** Every drop counter of the generations that are not zero, by generation and VM. */
export function datapathDrops(names: string[], stats: Stats[]): string {
  const out: string[] = [];
  stats.forEach((st, i) => {
    for (const [vm, v] of Object.entries(st.vms)) for (const [k, n] of Object.entries(v.drops)) if (n) out.push(`${names[i]} ${vm} ${k} ${n}`);
    for (const [port, e] of [['uplink', st.uplink], ['peer', st.peer]] as const) if (e && (e.drop_tx || e.drop_no_dest)) out.push(`${names[i]} ${port} drop_tx ${e.drop_tx} no_dest ${e.drop_no_dest}`);
  });
  return out.length ? `datapath drops: ${out.join(', ')}` : 'datapath drops: none';
}
