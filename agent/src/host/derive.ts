// The host's upgrade state, replayed from its journal (upgrade.ts appends, this reads), and the
// agent's failure type. Pure: no I/O.
import type { Budget, Measurement, UpgradeLoss } from '../../../protocol/measure.js';
import type { UpgradeMode, VmEntry } from '../../../protocol/files.js';
import type { Exposed, Failover, UpgradeState, UpgradeStatus } from '../../../protocol/agent.js';
import type { Stamped } from './journal.js';

export class AgentFailure extends Error {
  constructor(
    readonly code: 'invalid-state' | 'unknown-release' | 'unknown-vm' | 'failed' | 'refused',
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
  /** a generation of this host died and no replacement runs yet: the VMs have no way out */
  exposed: Exposed | null;
  /** every generation death the journal holds, newest last */
  failovers: Failover[];
  /** VMs found in an OVS-DPDK host's DB and not gone since (discover.ts), in the order found */
  found: Map<string, VmEntry>;
  /** what the VMs lost over the last finished upgrade (null since a prepare) */
  loss: UpgradeLoss | null;
}

export function derive(entries: readonly Stamped[]): Derived {
  const d: Derived = { active: null, target: null, state: 'idle', mode: 'handoff', core: null, approve: 'each', budget: null, moved: new Map(), swapped: false, pending: null, lastOutcome: null, error: null, exposed: null, failovers: [], found: new Map(), loss: null };
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
        d.loss = null;
        d.pending = e;
        outer = null;
        break;
      case 'loss':
        d.loss = e.loss;
        break;
      case 'prepared':
        d.state = 'switching';
        d.pending = null;
        outer = null;
        break;
      case 'prepare-failed':
        d.error = `prepare of ${d.target?.release}: ${e.error}`;
        d.target = null;
        d.state = 'idle';
        d.lastOutcome = 'aborted';
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
      case 'gen-dead': {
        // the keeper moved each VM it could: a VM now on the target counts as moved
        for (const s of e.sessions) {
          if (d.target && s.serving === d.target.gen) d.moved.set(s.vm, d.moved.get(s.vm) ?? null);
          else if (d.active && s.serving === d.active.gen) d.moved.delete(s.vm);
        }
        if (e.gen === d.active?.gen || e.gen === d.target?.gen)
          d.exposed = { gen: e.gen, since: e.t, why: `generation ${e.gen} died (${e.cause})` };
        d.failovers.push({
          t: e.t,
          gen: e.gen,
          cause: e.cause,
          moved: e.moved,
          down: e.down,
          lost_inside: e.lost_inside,
          restored: null,
          restore_error: null,
        });
        break;
      }
      case 'restore':
        d.pending = e;
        break;
      case 'restored': {
        const ref = d.active?.gen === e.replaces ? 'active' : d.target?.gen === e.replaces ? 'target' : null;
        if (ref) d[ref] = { gen: e.gen, release: d[ref]!.release };
        // a stage swap does not survive its generation: the replacement runs its own release's
        if (ref === 'active' && d.mode === 'swap' && d.target) {
          d.swapped = false;
          d.moved = new Map();
        }
        if (ref === 'active') d.core = d.active!.release;
        if (d.exposed?.gen === e.replaces) d.exposed = null;
        const f = [...d.failovers].reverse().find((x) => x.gen === e.replaces);
        if (f) f.restored = { gen: e.gen, took_ms: e.took_ms, outage_ms: e.outage_ms };
        d.pending = outer;
        break;
      }
      case 'vm-found':
        d.found.set(e.vm, { name: e.vm, mac: e.mac, ...(e.frontend_socket ? { frontend_socket: e.frontend_socket } : {}) });
        break;
      case 'vm-gone':
        d.found.delete(e.vm);
        break;
      case 'restore-failed': {
        const f = [...d.failovers].reverse().find((x) => x.gen === e.replaces);
        if (f) f.restore_error = e.error;
        d.error = `restoring a standby for ${e.replaces}: ${e.error}`;
        d.pending = outer;
        break;
      }
    }
  }
  return d;
}
