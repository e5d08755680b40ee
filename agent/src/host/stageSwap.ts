// Swap mode of a host's upgrade (the Baidu approach): the active generation replaces its
// forwarding stage in place (lib/swap) instead of a new generation taking the VMs over. This
// file gathers what modes.ts judges (manifests, the running stage, the FDB's size, the journal's
// measurements), loads and checks the target's stage before anything changes (lib/load), and makes and
// measures the swap itself for every VM at once. The state machine (upgrade.ts) journals around it.
import type { UpgradePlan, UpgradeStatus } from '../../../protocol/agent.js';
import { figures, type Budget, type MeasuredParts, type Measurement } from '../../../protocol/measure.js';
import { dp } from '../../../protocol/native/dp.js';
import { CtlError } from '../native/ctlClient.js';
import type { AgentConfig } from '../../../protocol/files.js';
import { readManifest, stagePath } from './config.js';
import { kindOf } from './datapath.js';
import { AgentFailure, type Approve, type Derived, type GenRef } from './derive.js';
import type { Journal } from './journal.js';
import { judgeModes } from './modes.js';
import type { Supervisor } from './supervisor.js';
import type { TrafficWitness } from './witness.js';

/** What of the host agent this needs. */
export interface SwapHost {
  readonly root: string;
  readonly cfg: AgentConfig;
  readonly sup: Supervisor;
  readonly journal: Journal;
  readonly d: Derived;
  vms(): { name: string; mac: string }[];
  release(version: string): string;
  trusted(version: string): Promise<void>;
  status(): Promise<UpgradeStatus>;
  notify(s: UpgradeStatus, m?: Measurement): void;
  drops(vm: string, gens: string[]): Promise<number>;
  readonly witness: TrafficWitness | null;
}

/** The ways to reach version from here: the facts modes.ts judges, gathered on this host. */
export async function planModes(h: SwapHost, version: string): Promise<UpgradePlan> {
  const d = h.d;
  if (!d.active || !h.sup.genAlive(d.active.gen)) throw new AgentFailure('invalid-state', 'no active generation runs on this host (host/start first)');
  h.release(version);
  const core = d.core ?? d.active.release;
  let stage: { layout: number; abi: number } | null = null;
  let fdbEntries = 0;
  let stageRefusal: string | null = null;
  try {
    // only hitless-dp has a forwarding stage to ask about
    if (kindOf(h.root, d.active.release) !== 'hitless-dp') throw new Error('no stage');
    const ctl = await h.sup.gen(d.active.gen);
    const lib = await ctl.request(dp.libInfo, {});
    stage = { layout: lib.stage.layout, abi: lib.abi };
    fdbEntries = (await ctl.request(dp.genInfo, {})).fdb_entries;
    // the datapath's own word on the target's stage (loads, ABI, a conversion of the layout);
    // a stage is code: it is opened only from a release that passes the signature check
    stageRefusal = await h.trusted(version).then(
      () =>
        ctl.request(dp.libCheck, { path: stagePath(h.root, version) }).then(
          () => null,
          (e: Error) => (e instanceof CtlError && e.code === 'already-running' ? null : e.message),
        ),
      (e: Error) => e.message,
    );
  } catch {
    /* an OVS-DPDK generation, or an older datapath without lib/info: swap is judged unavailable */
  }
  const history = h.journal.entries().flatMap((e) =>
    e.type === 'switched' && e.measurement ? [e.measurement] : e.type === 'swapped' ? (e.measurements ?? []) : [],
  );
  const j = judgeModes({
    core: { release: core, ...readManifest(h.root, core) },
    target: { release: version, ...readManifest(h.root, version) },
    stage,
    fdbEntries,
    history,
    stageRefusal,
  });
  return { host: h.cfg.host, release: version, active: { ...d.active, core }, ...j };
}


/** Swap mode's prepare: the running datapath opens and checks the target's stage now (lib/load),
 * so the swap later only switches. */
export async function prepareSwap(h: SwapHost, version: string, approve: Approve, active: GenRef, budget: Budget | null, campaign: string | null): Promise<void> {
  await h.trusted(version);
  h.journal.append({ type: 'prepare', gen: active.gen, release: version, approve, mode: 'swap', budget, campaign });
  h.notify(await h.status());
  try {
    await (await h.sup.gen(active.gen)).request(dp.libLoad, { path: stagePath(h.root, version) });
  } catch (e) {
    h.journal.append({ type: 'abort', outcome: 'aborted' });
    h.journal.append({ type: 'aborted', outcome: 'aborted' });
    h.notify(await h.status());
    throw new AgentFailure('failed', `the running datapath would not take ${version}'s stage: ${(e as Error).message}`);
  }
  h.journal.append({ type: 'prepared' });
  h.notify(await h.status());
}

/**
 * Swap mode's one switch: replace the active generation's stage with the target's (or put
 * the previous one back) under every VM at once, and measure it per VM: the loop's window,
 * frames the datapath dropped, and the witness's view; judged against the host's budget.
 */
export async function swapStage(h: SwapHost, to: 'target' | 'active'): Promise<Measurement[]> {
  const d = h.d;
  const gen = d.active!.gen;
  const ctl = await h.sup.gen(gen);
  const vms = h.vms().map((v) => v.name);
  if (to === 'target') await h.trusted(d.target!.release);
  h.journal.append({ type: 'swap', to });
  const watch = (await h.witness?.begin(vms)) ?? null;
  const before = await Promise.all(vms.map((vm) => h.drops(vm, [gen])));
  let r;
  try {
    r = to === 'target' ? await ctl.request(dp.libSwap, { path: stagePath(h.root, d.target!.release) }) : await ctl.request(dp.libRollback, {});
  } catch (e) {
    watch?.cancel();
    h.journal.append({ type: 'swap-failed', to, error: (e as Error).message });
    h.notify(await h.status());
    throw new AgentFailure('failed', `stage swap on ${gen}: ${(e as Error).message}`);
  }
  // the swap is made: it is journaled as made even if measuring it fails
  let out: Measurement[] | null = null;
  try {
    const seen = (await watch?.end({ start_ns: r.at_ns, end_ns: r.at_ns + r.window_ns })) ?? new Map();
    out = await Promise.all(
      vms.map(async (vm, i): Promise<Measurement> => {
        const parts: MeasuredParts = {
          vm,
          mode: 'swap',
          from: `${gen}:${r.from.name}@${r.from.version}`,
          to: `${gen}:${r.to.name}@${r.to.version}`,
          t_ns: r.at_ns,
          window_us: r.window_ns / 1000,
          phases_us: null,
          passive_gap_us: null,
          dropped: Math.max(0, (await h.drops(vm, [gen])) - before[i]!),
          rings: [],
          anomalies: r.converted_by ? [`FDB state layout ${r.from.layout} -> ${r.to.layout}: ${r.migrated} entries converted by the ${r.converted_by === 'to' ? 'incoming' : 'outgoing'} stage`] : [],
          witness: seen.get(vm) ?? null,
        };
        return { ...parts, ...figures(parts, d.budget) };
      }),
    );
  } catch (e) {
    console.error(`hitless-agent: the stage swap on ${gen} was made but not measured: ${(e as Error).message}`);
  }
  h.journal.append({ type: 'swapped', to, measurements: out });
  const st = await h.status();
  for (const m of out ?? []) h.notify(st, m);
  return out ?? [];
}
