// A traffic witness: something that sees a VM's frames from the VM's side (the lab's probe VMs;
// later a guest's own counters) and can say, for a switch, what the VM lost, what arrived late
// and how long it went without frames (DESIGN.md §10). Optional: a host without one is measured
// by its datapath's counters alone, and its reports say so. The agent asks it around each switch
// and nothing else of the agent depends on what it is.
import { z } from 'zod';
import type { Witness } from '../../../protocol/measure.js';

/** A switch window in CLOCK_MONOTONIC ns (the clock of the keeper, the generations and the witness). */
export interface SwitchWindow {
  start_ns: number;
  end_ns: number;
}

/** One switch being watched: begun before it, ended after it with its window. */
export interface WitnessSession {
  /** Each VM's view of the switch (VMs the witness does not see are absent). */
  end(window: SwitchWindow): Promise<Map<string, Witness>>;
  cancel(): void;
}

/** What a set of VMs lost over a stretch of time, switch windows or not (DESIGN.md §10: an
 * upgrade's loss is not only what its switches lost). */
export interface SpanLoss {
  source: string;
  /** of the VMs asked about, those the witness sees */
  vms: number;
  /** frames lost on their flows (each flow counted once: at its receiver when that is one of
   * the witness's VMs, else as refusals at its sender) */
  lost: number;
}

/** A span's start as the journal keeps it: the witness's cumulative counts per flow, from
 * which a later agent (restarted, upgraded) closes the span its predecessor opened. */
export const SpanBaseline = z.object({
  source: z.string(),
  counts: z.record(z.string(), z.object({ missing: z.number().int().min(0), refused: z.number().int().min(0), late: z.number().int().min(0) })),
});
export type SpanBaseline = z.infer<typeof SpanBaseline>;

export interface LossSpan {
  readonly baseline: SpanBaseline;
  end(): Promise<SpanLoss>;
}

export interface TrafficWitness {
  /** Start watching a switch that moves these VMs together; null when the witness is away. */
  begin(vms: readonly string[]): Promise<WitnessSession | null>;
  /** Start counting what these VMs lose until end() (a host's upgrade, prepare to its end);
   * null when the witness is away. */
  span(vms: readonly string[]): Promise<LossSpan | null>;
  /** The span a baseline started (one this witness's source made), to end it. */
  resumeSpan(vms: readonly string[], baseline: SpanBaseline): LossSpan;
  close(): void;
}
