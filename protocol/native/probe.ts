// hitless-probe's output, defined once: the JSON-lines events it streams and the summary it
// prints as its last stdout line (native/src/probe/report.c, events.c).
import { z } from 'zod';
import { request } from '../rpc.js';

const int = z.number().int();

export const Gap = z
  .object({
    flow: z.string(),
    src: z.string().optional(),
    rx_vm: z.string().optional(),
    start_ns: int,
    end_ns: int,
    gap_us: z.number(),
    lost_in_gap: int,
    open: z.boolean().optional(),
  })
  .passthrough();
export type Gap = z.infer<typeof Gap>;

export const Late = z.object({ flow: z.string(), src: z.string(), rx_vm: z.string(), sent_ns: int, at_ns: int, seq: int, behind: int }).passthrough();
export type Late = z.infer<typeof Late>;

export const Refusal = z
  .object({ flow: z.string(), src: z.string(), start_ns: int, end_ns: int, first_seq: int, frames: int, cause: z.enum(['ring_full', 'no_mbufs']) })
  .passthrough();
export type Refusal = z.infer<typeof Refusal>;

export const ProbeEvent = z.discriminatedUnion('event', [
  z.object({ event: z.literal('start'), data: z.object({ t_ns: int }).passthrough() }),
  z.object({ event: z.literal('stop'), data: z.object({ t_ns: int }).passthrough() }),
  z.object({ event: z.literal('gap'), data: Gap }),
  z.object({ event: z.literal('link'), data: z.object({ vm: z.string(), up: z.boolean(), t_ns: int }).passthrough() }),
  // the first of a run of frames that came behind a later one of their flow (reordered):
  // sent_ns by its sender, at_ns here, behind: how many later frames came before it
  z.object({ event: z.literal('late'), data: Late }),
  // frames first_seq.. (frames of them) its sender's port refused between start_ns and end_ns:
  // its transmit ring was full (ring_full) or the probe had no buffer (no_mbufs); counted lost
  z.object({ event: z.literal('refused'), data: Refusal }),
]);
export type ProbeEvent = z.infer<typeof ProbeEvent>;

// A flow whose receiver is in this probe: sent here (pps known) or seen arriving from another
// probe process (remote: true, offered inferred from the highest sequence number).
export const MeasuredFlow = z
  .object({
    src: z.string(),
    dst: z.string(),
    rx_side: z.literal('local'),
    pps: z.number().optional(),
    remote: z.boolean().optional(),
    offered: int,
    /** frames the sender's ring refused (they consumed their sequence numbers: counted lost) */
    tx_refused: int.default(0),
    /** frames its schedule skipped, never offered: the probe itself was not running in time */
    unsent_late: int.default(0),
    received: int,
    /** end of flow: offered - received (unique); while the flow runs it includes frames in flight */
    lost: int,
    /** frames missing below the highest sequence received (a later frame arrived; they did not yet) */
    missing: int.default(0),
    /** frames that arrived after a later frame of their flow (filled what was missing: delayed) */
    late: int.default(0),
    dup: int,
    reordered: int,
    gaps: z.array(Gap),
    gap_count: int,
    max_gap_us: z.number(),
    break_ms_loss: z.number(),
    break_ms_timestamp: z.number(),
    /** frames/s arriving (remote flows: the only rate known here) */
    rate_rx_pps: z.number().default(0),
    /** the source port's transmit queue it was sent on (flows sent here) */
    txq: int.optional(),
  })
  .passthrough();
export type MeasuredFlow = z.infer<typeof MeasuredFlow>;

// A flow this probe sends to a VM of another probe process: only the sending side is here.
export const SentFlow = z
  .object({ src: z.string(), dst: z.string(), rx_side: z.literal('remote'), pps: z.number(), offered: int, tx_refused: int.default(0) })
  .passthrough();

export const FlowSummary = z.discriminatedUnion('rx_side', [MeasuredFlow, SentFlow]);
export type FlowSummary = z.infer<typeof FlowSummary>;

export const ProbeSummary = z
  .object({
    duration_s: z.number(),
    vms: z.record(
      z.object({ rx: int, tx: int, tx_refused: int, foreign: int, link_down: int, resets: int, /** receive buffers the driver could not post (mbufs ran out) */ rx_nombuf: int }).passthrough(),
    ),
    flows: z.array(FlowSummary),
    /** the meter's own health: a stalled probe posts no receive buffers and sends late */
    meter: z.object({ loop_max_stall_us: int, loop_max_stall_at_us: int, mbufs_free: int }),
    totals: z.object({ offered: int, received: int, lost: int, dup: int, reordered: int }).passthrough(),
  })
  .passthrough();
export type ProbeSummary = z.infer<typeof ProbeSummary>;

/** The flows whose receiving side this probe measured. */
export function measured(sum: ProbeSummary): MeasuredFlow[] {
  return sum.flows.filter((f): f is MeasuredFlow => f.rx_side === 'local');
}

// hitless-probe's control commands (--ctl), each defined once.

const FlowRef = z.object({ flow: z.string().min(1) }).strict();
const FlowList = z.object({
  flows: z.array(z.object({ id: int, flow: z.string(), pps: int, paused: z.boolean() })),
});

export const probe = {
  statsShow: request('stats/show', z.object({}).strict(), ProbeSummary.extend({ state: z.string(), /** the gap threshold: shorter gaps are not reported */ gap_us: int })),
  flowSet: request('flow/set', FlowRef.extend({ pps: int.min(1).max(100_000_000) }).strict(), FlowList),
  flowPause: request('flow/pause', FlowRef, FlowList),
  flowResume: request('flow/resume', FlowRef, FlowList),
  vmRxPause: request(
    'vm/rx-pause',
    z.object({ vm: z.string(), ms: int.min(0).max(60000) }).strict(),
    z.object({ vm: z.string(), start_ns: int, until_ns: int }),
  ),
  vmReset: request('vm/reset', z.object({ vm: z.string() }).strict(), z.object({ vm: z.string(), resets_before: int })),
  probeStop: request('probe/stop', z.object({}).strict(), z.object({ stopping: z.boolean() })),
} as const;

/** The receive gaps among a probe's events (what protocol/measure.ts attributes). */
export function gapsOf(events: readonly ProbeEvent[]): Gap[] {
  return events.flatMap((e) => (e.event === 'gap' ? [e.data] : []));
}

/** The runs of reordered frames, each as its first frame. */
export function latesOf(events: readonly ProbeEvent[]): Late[] {
  return events.flatMap((e) => (e.event === 'late' ? [e.data] : []));
}
