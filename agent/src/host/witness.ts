// A traffic witness: something that sees a VM's frames from the VM's side (the lab's probe VMs;
// later a guest's own counters) and can say, for a switch, what the VM lost, what arrived late
// and how long it went without frames (DESIGN.md §10). Optional: a host without one is measured
// by its datapath's counters alone, and its reports say so. The agent asks it around each switch
// and nothing else of the agent depends on what it is.
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

export interface TrafficWitness {
  /** Start watching a switch that moves these VMs together; null when the witness is away. */
  begin(vms: readonly string[]): Promise<WitnessSession | null>;
  close(): void;
}
