// Which upgrade modes can take a host to a release, and the break each is expected to cost.
// Pure: the agent gathers the facts (manifests, the running stage, the FDB's size, the host's
// journal) and this judges them, so the rules are tested without a host.
import type { Measurement } from '../../../protocol/measure.js';
import type { ModeOption } from '../../../protocol/agent.js';
import type { ReleaseManifest, UpgradeMode } from '../../../protocol/files.js';

/**
 * Figures of the benchmarks on the 2-core lab machine (bench/results/), used until a host has
 * switched often enough to predict from its own journal: handoff's receive gap p50
 * (bench/run handoff, and --datapath ovs for OVS-DPDK generations), swap's loop window for an unchanged layout and per FDB entry converted
 * (bench/run swap), and a keeper upgrade's control pause p50 (bench/run keeper-upgrade).
 */
export const BENCH = { handoffGapUs: 580, swapWindowUs: 1, swapPerEntryUs: 0.07, ovsHandoffGapUs: 246_800, keeperPauseUs: 22_760 } as const;
const OWN_HISTORY_MIN = 3;

export interface ReleaseFacts {
  release: string;
  manifest: ReleaseManifest | null;
  error?: string;
}

export interface ModeFacts {
  /** the release whose process core runs the active generation */
  core: ReleaseFacts;
  target: ReleaseFacts;
  /** the running forwarding stage's state layout, and the datapath's stage ABI */
  stage: { layout: number; abi: number } | null;
  fdbEntries: number;
  history: readonly Measurement[];
  /** the running datapath's answer to lib/check of the target's stage: null when it would take
   * it (or was not asked), else why not */
  stageRefusal?: string | null;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
};

/** null when swap can be used; else why not, for the operator. */
function swapRefusal(f: ModeFacts): string | null {
  const t = f.target.manifest;
  const c = f.core.manifest;
  if (!t) return `release ${f.target.release} has no usable manifest (${f.target.error ?? 'none'}): handoff only`;
  if (t.kind !== 'hitless-dp' || (c && c.kind !== 'hitless-dp'))
    return `swap replaces hitless-dp's forwarding stage in place; an OVS-DPDK generation has no such stage: handoff only`;
  if (!t.modes.includes('swap')) return `release ${f.target.release} does not offer swap (its manifest lists ${t.modes.join(', ')})`;
  if (!c || c.kind !== 'hitless-dp') return `the running core's release ${f.core.release} has no usable manifest, so a matching core cannot be shown: handoff only`;
  if (t.core !== c.core)
    return `release ${f.target.release} changes the datapath core (${c.core} running, ${t.core} in ${f.target.release}): the process must be replaced, by handoff`;
  if (t.dpdk !== c.dpdk) return `release ${f.target.release} is built with DPDK ${t.dpdk}; the running core with ${c.dpdk}`;
  if (f.stage && t.fwd.abi !== f.stage.abi) return `release ${f.target.release}'s stage speaks ABI ${t.fwd.abi}; the running datapath speaks ${f.stage.abi}`;
  if (!f.stage) return 'the running generation does not answer lib/info: swap needs it running';
  if (f.stageRefusal) return `the running datapath would not take ${f.target.release}'s stage: ${f.stageRefusal}`;
  return null;
}

/** The kind a release runs as (a release without a manifest is hitless-dp's). */
const kindOf = (r: ReleaseFacts) => r.manifest?.kind ?? 'hitless-dp';

export function judgeModes(f: ModeFacts): { modes: ModeOption[]; recommended: UpgradeMode } {
  const t = f.target.manifest;
  const kindChange = kindOf(f.core) !== kindOf(f.target);
  const handoffOk = !kindChange && (!t || (t.modes as string[]).includes('handoff'));
  // an OVS-DPDK generation keeps no per-port times (no datapath gap): its switches' break
  const ovs = kindOf(f.target) === 'ovs-dpdk';
  const handoffOwn = f.history.flatMap((m) =>
    m.mode !== 'handoff' ? [] : ovs ? [m.break_ms * 1000] : m.passive_gap_us !== null ? [m.passive_gap_us] : [],
  );
  const handoff: ModeOption = {
    mode: 'handoff',
    available: handoffOk,
    reason: handoffOk
      ? `a ${f.target.release} generation (${kindOf(f.target)}) starts beside the running one; each VM's vhost-user session is handed to it, one VM at a time`
      : kindChange
        ? `the host runs ${kindOf(f.core)} and ${f.target.release} is ${kindOf(f.target)}: a handoff between datapath kinds is not supported (VMs split across them would have no link to each other)`
        : `release ${f.target.release} does not offer handoff (its manifest lists ${t!.modes.join(', ')})`,
    predicted_break_us: handoffOwn.length >= OWN_HISTORY_MIN ? median(handoffOwn) : ovs ? BENCH.ovsHandoffGapUs : BENCH.handoffGapUs,
    basis:
      handoffOwn.length >= OWN_HISTORY_MIN
        ? `median ${ovs ? 'break' : 'datapath gap'} of ${handoffOwn.length} handoffs on this host`
        : ovs
          ? 'bench/run handoff --datapath ovs (receive gap p50)'
          : 'bench/run handoff (receive gap p50)',
    approvals: 'per-vm',
  };

  const refusal = swapRefusal(f);
  const layoutChange = f.stage !== null && t !== null && t.kind === 'hitless-dp' && t.fwd.layout !== f.stage.layout;
  // one figure per swap (its VMs share it), and only swaps that converted nothing: a layout
  // change is predicted from its table size instead
  const swapOwn = [
    ...new Map(
      f.history.filter((m) => m.mode === 'swap' && !m.anomalies.some((a) => a.startsWith('FDB state layout'))).map((m) => [m.t_ns, m.window_us]),
    ).values(),
  ];
  const hd = t?.kind === 'hitless-dp' ? t : null; // whenever swap is available
  const modelled = BENCH.swapWindowUs + (layoutChange ? BENCH.swapPerEntryUs * f.fdbEntries : 0);
  const swap: ModeOption = {
    mode: 'swap',
    available: refusal === null,
    reason:
      refusal ??
      `same core (${hd?.core}) and DPDK ${hd?.dpdk}: ${f.target.release}'s forwarding stage replaces the running one in place, every VM at once` +
        (layoutChange ? `, converting ${f.fdbEntries} FDB entries from state layout ${f.stage!.layout} to ${hd?.fwd.layout}` : ''),
    predicted_break_us: Math.round((!layoutChange && swapOwn.length >= OWN_HISTORY_MIN ? median(swapOwn) : modelled) * 100) / 100,
    basis:
      !layoutChange && swapOwn.length >= OWN_HISTORY_MIN
        ? `median loop window of ${swapOwn.length} swaps on this host`
        : `bench/run swap (${BENCH.swapWindowUs} us${layoutChange ? ` + ${BENCH.swapPerEntryUs} us per FDB entry converted` : ''})`,
    approvals: 'per-host',
  };
  return { modes: [handoff, swap], recommended: swap.available ? 'swap' : 'handoff' };
}

/** A keeper upgrade's control pause (how long the VMs' control messages wait), expected: the
 * median of this host's own keeper upgrades once it has had a few, else the benchmark's. */
export function predictKeeperPause(own: readonly number[]): { predicted_pause_us: number; basis: string } {
  return own.length >= OWN_HISTORY_MIN
    ? { predicted_pause_us: median([...own]), basis: `median pause of ${own.length} keeper upgrades on this host` }
    : { predicted_pause_us: BENCH.keeperPauseUs, basis: 'bench/run keeper-upgrade (control pause p50)' };
}
