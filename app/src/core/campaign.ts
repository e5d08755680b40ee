// A campaign: upgrade a set of hosts to a release, one host at a time (the first is the
// canary: a failure there stops everything after it). Each host: prepare (the agent starts the
// new generation and pre-loads every session), then move the VMs — one approval per VM, or the
// agent's own auto mode within a budget — then commit. In swap mode (the agent replaces the
// running generation's forwarding stage in place) one approval moves all of a host's VMs at
// once. Plain Node: used by the CLI.
import { agent, events, type Budget, type Measurement, type ModeChoice, type UpgradeStatus } from '../../../agent/src/common/protocol.js';
import type { AgentSession } from './ssh/agentSession.js';

export type Approver = (host: string, vm: string, ctx: { measured: Measurement[]; budget: Budget | null }) => Promise<'yes' | 'no' | 'stop'>;

export interface CampaignPlan {
  hosts: string[];
  release: string;
  approve: 'each' | { auto: Budget };
  mode: ModeChoice;
}

export interface HostOutcome {
  host: string;
  outcome: 'committed' | 'stopped' | 'failed' | 'skipped';
  measurements: Measurement[];
  error: string | null;
}

export interface Progress {
  (line: string): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Upgrade one host through its agent session; returns what happened, never half-done. */
export async function upgradeHost(s: AgentSession, plan: CampaignPlan, approve: Approver, progress: Progress): Promise<HostOutcome> {
  const host = s.target.alias;
  const measurements: Measurement[] = [];
  s.agent.on(events.measurement, (p) => {
    measurements.push(p.measurement);
    const m = p.measurement;
    progress(`${host} ${m.vm}: ${m.from} -> ${m.to}  window ${m.window_us.toFixed(0)} us  dropped ${m.dropped}` +
      (m.passive_gap_us !== null ? `  datapath gap ${(m.passive_gap_us / 1000).toFixed(2)} ms` : '') +
      (m.probe ? `  probe: lost ${m.probe.lost}, ${m.probe.gap_ms === null ? 'no gap over its threshold' : `gap ${m.probe.gap_ms} ms`}` : ''));
  });
  let st: UpgradeStatus = await s.agent.request(agent.upgradeStatus, {});
  if (st.state !== 'idle') return { host, outcome: 'failed', measurements, error: `host is ${st.state}, not idle: finish or roll back its upgrade first` };
  if (st.active?.release === plan.release) return { host, outcome: 'skipped', measurements, error: null };
  // an agent from before upgrade modes answers neither upgrade/plan nor `mode`: handoff only
  const options = await s.agent.request(agent.upgradePlan, { release: plan.release }).catch(() => null);
  if (!options && plan.mode !== 'handoff') return { host, outcome: 'failed', measurements, error: `its agent does not know upgrade modes (an older agent): ${plan.mode} cannot be used; use --mode handoff` };
  for (const m of options?.modes ?? [])
    progress(`${host}: ${m.mode}: ${m.available ? `expected break ${m.predicted_break_us} us per VM (${m.basis})` : `not possible: ${m.reason}`}`);
  st = await s.agent.request(agent.upgradePrepare, { release: plan.release, approve: plan.approve, ...(plan.mode !== 'handoff' ? { mode: plan.mode } : {}) });
  progress(
    st.mode === 'swap'
      ? `${host}: prepared an in-place stage swap ${st.active?.release ?? '?'} -> ${plan.release} (the running datapath accepts the stage)`
      : `${host}: prepared ${plan.release} beside ${st.active?.release ?? '?'} (new generation, sessions pre-loaded)`,
  );
  if (plan.approve === 'each' && st.mode === 'swap') {
    const a = await approve(host, `all ${st.vms.length} VMs at once (stage swap)`, { measured: measurements, budget: null });
    if (a === 'stop') return { host, outcome: 'stopped', measurements, error: 'stopped by the operator' };
    if (a === 'no') return { host, outcome: 'stopped', measurements, error: 'stage swap denied; the host keeps its stage with the swap prepared (hitless rollback clears it)' };
    st = await s.agent.request(agent.upgradeSwitch, { vms: st.vms.map((v) => v.vm) });
  } else if (plan.approve === 'each') {
    const budget = null;
    for (const v of st.vms) {
      if (v.moved) continue;
      const a = await approve(host, v.vm, { measured: measurements, budget });
      if (a === 'stop') return { host, outcome: 'stopped', measurements, error: 'stopped by the operator' };
      if (a === 'no') continue;
      st = await s.agent.request(agent.upgradeSwitch, { vms: [v.vm] });
    }
  } else {
    await s.agent.request(agent.upgradeRun, {});
    for (;;) {
      await sleep(200);
      st = await s.agent.request(agent.upgradeStatus, {});
      if (st.error) return { host, outcome: 'stopped', measurements, error: st.error };
      // an over-budget switch is recorded just after it: never commit in between
      const over = st.vms.filter((v) => v.measurement?.within_budget === false).map((v) => v.vm);
      if (over.length) return { host, outcome: 'stopped', measurements, error: `over budget: ${over.join(', ')}; not committed` };
      if (st.vms.every((v) => v.moved || !v.connected)) break;
    }
  }
  if (!st.vms.every((v) => v.moved || !v.connected))
    return { host, outcome: 'stopped', measurements, error: `not every VM moved: ${st.vms.filter((v) => !v.moved).map((v) => v.vm).join(', ')}` };
  st = await s.agent.request(agent.upgradeCommit, {});
  progress(
    st.mode === 'swap'
      ? `${host}: committed, its generation runs ${st.active?.release}'s stage on ${st.active?.core}'s core`
      : `${host}: committed, now on ${st.active?.release}; the old generation is stopped`,
  );
  // measurements the notifications carried, or the status when they were missed
  for (const v of st.vms) if (v.measurement && !measurements.some((m) => m.vm === v.vm && m.t_ns === v.measurement!.t_ns)) measurements.push(v.measurement);
  return { host, outcome: 'committed', measurements, error: null };
}
