// The one host-upgrade driver: takes one host to a release through its agent — its keeper
// replaced first when the plan says so (asked once), prepare, then
// each move behind the approval callback (a VM at a time, or all of a host's VMs at once for a
// stage swap) or the agent's own auto mode within the budget, then commit — and reports every
// step. The console's campaigns, its guided rollback (a downgrade of a committed host) and the
// CLI all use it. It starts from wherever the agent says the host is, so resuming is calling it
// again. It waits on the agent's pushed state, never on a timer; the agent judges each switch
// against the budget and the driver acts on that verdict.
import type { z } from 'zod';
import { agent, type KeeperUpgraded, type ModeChoice, type UpgradeStatus } from '../../../protocol/agent.js';
import type { Decision, KeeperStep } from '../../../protocol/console.js';
import { judge, type Budget, type Measurement, type UpgradeLoss } from '../../../protocol/measure.js';
import type { Request } from '../../../protocol/rpc.js';
import type { ApprovalKind, SignedApproval } from '../../../protocol/approval.js';
import { contextDigest, type ApprovalFacts } from './approvalSign.js';

/** What the driver needs of a host's agent connection (HostConn). */
export interface AgentLink {
  request<P extends z.ZodTypeAny, R extends z.ZodTypeAny>(req: Request<P, R>, params: z.input<P>): Promise<z.output<R>>;
  /** The first status the agent pushes from now on for which pred holds; rejects when the
   * connection drops or signal aborts. */
  until(pred: (st: UpgradeStatus) => boolean, signal: AbortSignal): Promise<UpgradeStatus>;
}

export interface HostUpgradePlan {
  release: string;
  /** how the VMs move; auto: the agent's recommendation, resolved at prepare */
  mode: ModeChoice;
  /** each: ask (the callback) before each move; auto: the agent moves every VM within the budget */
  approval: 'each' | 'auto';
  /** what the agent judges each switch against; required for auto */
  budget: Budget | null;
  /** VMs an operator already denied (a resumed campaign does not ask again) */
  denied: readonly string[];
  /** the plan's keeper step: the host's keeper replaced before it is prepared, if it is still
   * due then (asked once when approval is each); null: none */
  keeper: KeeperStep | null;
  /** how decisions reach the agent signed (DESIGN.md §15); null: unsigned */
  signing: Signing | null;
}

/** Signing the operator's decisions for the host's agent, which verifies them against its
 * approvers file before it acts. */
export interface Signing {
  /** the campaign (or rollback) the approvals belong to; named at prepare too */
  campaign: string;
  /** the facts signed with the operator's key (approvalSign.ts); null: no key to sign with (a
   * host without an approvers file takes the request unsigned; one with it refuses) */
  sign(facts: ApprovalFacts): Promise<SignedApproval | null>;
  /** the decision behind the agent's own auto run: the campaign started in auto mode, or its
   * wave approved (kind wave) */
  auto: (Decision & { kind: 'auto' | 'wave' }) | null;
}

/** The signed approval of a step, as the request's approval member (none: nothing to sign). */
async function approval(plan: HostUpgradePlan, host: string, kind: ApprovalKind, vms: string[], d: Decision | null): Promise<{ approval?: SignedApproval }> {
  const s = plan.signing;
  const dec = d ?? s?.auto;
  if (!s || !dec) return {};
  const budget = kind === 'auto' || kind === 'wave' ? plan.budget : null;
  const facts: ApprovalFacts = {
    campaign: s.campaign,
    kind: d ? kind : (s.auto?.kind ?? kind),
    host,
    vms,
    release: plan.release,
    mode: plan.mode,
    decision: dec.decision,
    reason: dec.reason,
    budget,
    decided: dec.at,
    context: dec.context ?? contextDigest({ campaign: s.campaign, host, vms, release: plan.release, budget }),
  };
  const signed = await s.sign(facts);
  return signed ? { approval: signed } : {};
}

export type VmStep = 'awaiting-approval' | 'switching' | 'moved' | 'denied' | 'failed';

export interface DriverHooks {
  signal: AbortSignal;
  /** Wait while the operator holds the host (pause); rejects to stop. */
  gate(): Promise<void>;
  /** Ask about moving these VMs (one, or all of a host's at once for a swap): the operator's
   * decision, or null when nobody will answer any more (the campaign is stopping). */
  ask(vms: string[], previous: Measurement | null): Promise<Decision | null>;
  /** Ask about replacing the host's keeper (plan.keeper): as ask. */
  askKeeper?(step: KeeperStep): Promise<Decision | null>;
  /** the keeper step's outcome: replaced (r), or denied (r null) */
  keeper?(r: KeeperUpgraded | null, decision: Decision | null): void;
  preparing(): void;
  /** the host is prepared (or was already): the mode it moves by */
  switching(st: UpgradeStatus): void;
  vm(vm: string, step: VmStep, m: Measurement | null, decision?: Decision): void;
}

export type HostResult =
  | { outcome: 'committed'; release: string | null; loss: UpgradeLoss | null }
  | { outcome: 'skipped' }
  | { outcome: 'held'; denied: string[] }
  | { outcome: 'stopped' }
  | { outcome: 'failed'; error: string };

const moved = (st: UpgradeStatus) => st.vms.every((v) => v.moved || !v.connected);

function overBudget(st: UpgradeStatus, budget: Budget | null): string | null {
  const over = st.vms.filter((v) => v.measurement?.within_budget === false);
  if (over.length === 0) return null;
  return over.map((v) => `${v.vm}: ${budget ? judge(v.measurement!, budget) : 'over budget'}`).join('; ');
}

/** The keeper step, before prepare: the installed keeper takes the running one's sessions over
 * (agent keeper/upgrade) when it is still due. A keeper that cannot take over fails the host
 * (the running one keeps every session: the agent says so). */
async function replaceKeeper(link: AgentLink, plan: HostUpgradePlan, h: DriverHooks, host: string): Promise<'stopped' | null> {
  if (!(await link.request(agent.keeperVersions, {})).due) return null;
  let d: Decision | null = null;
  if (plan.approval === 'each') {
    if (!h.askKeeper) throw new Error('a keeper step needs an operator to ask');
    d = await h.askKeeper(plan.keeper!);
    if (!d) return 'stopped';
    if (d.decision === 'deny') {
      h.keeper?.(null, d);
      return null;
    }
    await h.gate();
  }
  h.keeper?.(await link.request(agent.keeperUpgrade, { ...(await approval(plan, host, 'keeper', [], d)) }), d);
  return null;
}

export async function upgradeHost(link: AgentLink, plan: HostUpgradePlan, h: DriverHooks): Promise<HostResult> {
  const { release } = plan;
  let st = await link.request(agent.upgradeStatus, {});
  if (st.state === 'idle' && st.active?.release === release) return { outcome: 'skipped' };
  if (st.state === 'idle') {
    await h.gate();
    if (plan.keeper && (await replaceKeeper(link, plan, h, st.host)) === 'stopped') return { outcome: 'stopped' };
    h.preparing();
    const approve = plan.approval === 'auto' ? { auto: plan.budget! } : ('each' as const);
    const signed = plan.approval === 'auto' ? await approval(plan, st.host, 'auto', [], null) : {};
    st = await link.request(agent.upgradePrepare, { release, approve, mode: plan.mode, ...(plan.budget ? { budget: plan.budget } : {}), ...(plan.signing ? { campaign: plan.signing.campaign } : {}), ...signed });
  } else if (st.state !== 'switching' || st.target?.release !== release) {
    return { outcome: 'failed', error: `the host is ${st.state}${st.target ? ` toward ${st.target.release}` : ''}, not on its way to ${release}: finish or roll that upgrade back first` };
  } else if (plan.mode !== 'auto' && st.mode !== plan.mode) {
    return { outcome: 'failed', error: `the host is already moving to ${release} by ${st.mode}, the plan says ${plan.mode}: finish or roll that upgrade back first` };
  }
  h.switching(st);
  const reported = new Set<string>();
  const absorb = (s: UpgradeStatus) => {
    for (const v of s.vms) {
      if (!v.moved || !v.measurement || reported.has(`${v.vm}@${v.measurement.t_ns}`)) continue;
      reported.add(`${v.vm}@${v.measurement.t_ns}`);
      h.vm(v.vm, 'moved', v.measurement);
    }
  };
  absorb(st);
  const denied = new Set(plan.denied);
  /** a denial, signed, goes into the host's journal too (it moves nothing) */
  const deny = async (vms: string[], kind: 'vm' | 'host', d: Decision) => {
    const signed = await approval(plan, st.host, kind, vms, d);
    if (signed.approval) st = await link.request(agent.upgradeDeny, { vms, approval: signed.approval });
  };
  const verdict = (s: UpgradeStatus): HostResult | null => {
    absorb(s);
    if (s.error) return { outcome: 'failed', error: s.error };
    const over = overBudget(s, plan.budget);
    if (over) return { outcome: 'failed', error: `${over}; the host is not committed: roll it back or resume` };
    return null;
  };

  if (plan.approval === 'auto') {
    if (!moved(st)) {
      await h.gate();
      // the agent moves every VM on its own; its pushed state says when it is done or stopped
      const done = link.until((s) => s.error !== null || overBudget(s, plan.budget) !== null || moved(s), h.signal);
      await link.request(agent.upgradeRun, {}).catch((e: Error) => {
        done.catch(() => undefined); // the wait ends with the connection; the request's error says why
        throw e;
      });
      st = await done;
      const v = verdict(st);
      if (v) return v;
    }
  } else if (st.mode === 'swap') {
    if (!moved(st) && !st.vms.some((v) => denied.has(v.vm))) {
      const all = st.vms.map((v) => v.vm);
      await h.gate();
      for (const vm of all) h.vm(vm, 'awaiting-approval', null);
      const d = await h.ask(all, null);
      if (!d) return { outcome: 'stopped' };
      if (d.decision === 'deny') {
        await deny(all, 'host', d);
        for (const vm of all) h.vm(vm, 'denied', null, d), denied.add(vm);
      } else {
        await h.gate();
        for (const vm of all) h.vm(vm, 'switching', null, d);
        st = await link.request(agent.upgradeSwitch, { vms: all, ...(await approval(plan, st.host, 'host', all, d)) });
        const v = verdict(st);
        if (v) return v;
        const missing = st.vms.filter((x) => !x.measurement).map((x) => x.vm);
        if (missing.length) return { outcome: 'failed', error: `${missing.join(', ')}: the agent reports no measurement for the stage swap` };
      }
    }
  } else {
    // the next VM from the agent's latest word each time: one the host has found since (an
    // OVS-DPDK host's VMs come and go with its DB) is asked for too
    for (;;) {
      let v = st.vms.find((x) => !x.moved && !denied.has(x.vm));
      if (!v) {
        // once more before the commit: the host may have found one since the last switch
        st = await link.request(agent.upgradeStatus, {});
        v = st.vms.find((x) => !x.moved && !denied.has(x.vm));
        if (!v) break;
      }
      await h.gate();
      h.vm(v.vm, 'awaiting-approval', null);
      const previous = st.vms.filter((x) => x.moved && x.measurement).at(-1)?.measurement ?? null;
      const d = await h.ask([v.vm], previous);
      if (!d) return { outcome: 'stopped' };
      if (d.decision === 'deny') {
        await deny([v.vm], 'vm', d);
        h.vm(v.vm, 'denied', null, d);
        denied.add(v.vm);
        continue;
      }
      await h.gate();
      h.vm(v.vm, 'switching', null, d);
      st = await link.request(agent.upgradeSwitch, { vms: [v.vm], ...(await approval(plan, st.host, 'vm', [v.vm], d)) });
      const m = st.vms.find((x) => x.vm === v.vm)?.measurement ?? null;
      if (!m) return { outcome: 'failed', error: `${v.vm}: the agent reports no measurement for its switch` };
      if (m.within_budget === false) {
        h.vm(v.vm, 'failed', m);
        return { outcome: 'failed', error: `${v.vm}: ${plan.budget ? judge(m, plan.budget) : 'over budget'}; the host stays with both generations: roll it back or resume` };
      }
      absorb(st);
    }
  }
  if (denied.size > 0) return { outcome: 'held', denied: [...denied] };
  if (!moved(st)) return { outcome: 'failed', error: `not every VM moved: ${st.vms.filter((v) => !v.moved).map((v) => v.vm).join(', ')}` };
  await h.gate();
  st = await link.request(agent.upgradeCommit, {});
  return { outcome: 'committed', release: st.active?.release ?? null, loss: st.loss };
}
