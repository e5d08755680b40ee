// The host's upgrade state, replayed from its journal (upgrade.ts appends, this reads), and the
// agent's failure type. Pure: no I/O.
import type { Budget, Measurement } from '../../../protocol/measure.js';
import type { UpgradeMode } from '../../../protocol/files.js';
import type { UpgradeState, UpgradeStatus } from '../../../protocol/agent.js';
import type { Stamped } from './journal.js';

export class AgentFailure extends Error {
  constructor(
    readonly code: 'invalid-state' | 'unknown-release' | 'unknown-vm' | 'failed',
    message: string,
  ) {
    super(message);
  }
}

export type Approve = 'each' | { auto: Budget };
export interface GenRef {
  gen: string;
  release: string;
  core?: string;
}

/** What the journal says, replayed. */
export interface Derived {
  active: GenRef | null;
  target: GenRef | null;
  state: UpgradeState;
  mode: UpgradeMode;
  /** the release whose process core the active generation runs */
  core: string | null;
  approve: Approve;
  /** the budget each switch is judged against (auto mode: its own) */
  budget: Budget | null;
  moved: Map<string, Measurement | null>; // VMs on the target
  swapped: boolean; // swap mode: the target's stage runs (every VM is on it)
  pending: Stamped | null; // last started step without its outcome
  lastOutcome: UpgradeStatus['last_outcome'];
  error: string | null;
}

export function derive(entries: readonly Stamped[]): Derived {
  const d: Derived = { active: null, target: null, state: 'idle', mode: 'handoff', core: null, approve: 'each', budget: null, moved: new Map(), swapped: false, pending: null, lastOutcome: null, error: null };
  // a commit or an abort/rollback runs switches or swaps of its own: once one of those ends,
  // the outer step is still what is under way
  let outer: Stamped | null = null;
  for (const e of entries) {
    switch (e.type) {
      case 'start':
        d.active = { gen: e.gen, release: e.release };
        d.core = e.release;
        break;
      case 'prepare':
        d.target = { gen: e.gen, release: e.release };
        d.approve = e.approve;
        d.budget = e.budget ?? (e.approve === 'each' ? null : e.approve.auto);
        d.mode = e.mode;
        d.swapped = false;
        d.state = 'preparing';
        d.moved = new Map();
        d.error = null;
        d.pending = e;
        outer = null;
        break;
      case 'prepared':
        d.state = 'switching';
        d.pending = null;
        outer = null;
        break;
      case 'switch':
        d.pending = e;
        break;
      case 'switched':
        if (e.to === d.target?.gen) d.moved.set(e.vm, e.measurement);
        else d.moved.delete(e.vm);
        d.pending = outer;
        break;
      case 'switch-failed':
        d.error = `${e.vm}: ${e.error}`;
        d.pending = outer;
        break;
      case 'swap':
        d.pending = e;
        break;
      case 'swapped':
        d.moved = new Map();
        if (e.to === 'target') for (const m of e.measurements ?? []) d.moved.set(m.vm, m);
        d.swapped = e.to === 'target';
        d.pending = outer;
        break;
      case 'swap-failed':
        d.error = `stage swap: ${e.error}`;
        d.pending = outer;
        break;
      case 'commit':
        d.state = 'committing';
        d.pending = e;
        outer = e;
        break;
      case 'committed':
        if (d.mode === 'handoff') d.core = d.target?.release ?? d.core;
        d.active = d.target;
        d.target = null;
        d.moved = new Map();
        d.swapped = false;
        d.state = 'idle';
        d.lastOutcome = 'committed';
        d.pending = null;
        outer = null;
        break;
      case 'abort':
        d.state = e.outcome === 'rolled-back' ? 'rolling-back' : 'aborting';
        d.pending = e;
        outer = e;
        break;
      case 'aborted':
        d.target = null;
        d.moved = new Map();
        d.swapped = false;
        d.state = 'idle';
        d.lastOutcome = e.outcome;
        d.pending = null;
        outer = null;
        break;
      case 'failed':
        d.state = 'failed';
        d.error = e.error;
        d.pending = null;
        outer = null;
        break;
    }
  }
  return d;
}
