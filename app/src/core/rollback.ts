// Guided rollback: a VM, a host, a wave or a whole campaign back to the release it ran before,
// previewed step by step before anything is done, then executed and verified (every VM on the
// expected release, and frames flowing to it again). A host mid-upgrade is rolled back by its
// agent (moved VMs back to the old generation, the new one stopped; or, after an in-place stage
// swap, the old stage swapped back); a committed host is downgraded the hitless way its agent
// recommends: the old release started beside the new one and each VM handed back, or the old
// stage swapped back in place where core and DPDK allow; then committed (hostUpgrade.ts, the
// same driver as a campaign's).
import { agent } from '../../../protocol/agent.js';
import type { Campaign, Decision, RollbackPlan, RollbackResult, RollbackScope } from '../../../protocol/console.js';
import type { HostConn } from './hostConn.js';
import { upgradeHost } from './hostUpgrade.js';
import type { SignedApproval } from '../../../protocol/approval.js';
import type { ApprovalFacts } from './approvalSign.js';

type Step = RollbackPlan['steps'][number];

export interface RollbackDeps {
  conn(host: string): HostConn | undefined;
  campaign(id: string): Campaign | undefined;
  /** the release a committed host ran before its last campaign, if a campaign moved it */
  previousRelease(host: string): string | null;
  /** sign the rollback's decision for a host's agent (null: no key to sign with) */
  sign(host: string, facts: ApprovalFacts): Promise<SignedApproval | null>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function hostStep(conn: HostConn | undefined, host: string, prev: string | null, blockers: string[], onlyVm?: string): Step | null {
  if (!conn) {
    blockers.push(`${host} is not in the fleet`);
    return null;
  }
  const r = conn.row;
  if (r.conn !== 'connected') {
    blockers.push(`${host} is not connected (${r.conn}${r.problem ? `: ${r.problem}` : ''})`);
    return null;
  }
  const vms = onlyVm ? r.vms.filter((v) => v.vm === onlyVm) : r.vms;
  if (onlyVm && vms.length === 0) {
    blockers.push(`${host} has no VM ${onlyVm}`);
    return null;
  }
  if ((r.state === 'switching' || r.state === 'preparing' || r.state === 'failed') && r.mode === 'swap') {
    if (onlyVm) {
      blockers.push(`${host} is moving by an in-place stage swap: its VMs go back together; roll back the host`);
      return null;
    }
    const swapped = r.vms.filter((v) => v.moved).map((v) => v.vm);
    return { host, action: 'retire-target', vms: swapped, from: r.target?.release ?? null, to: r.active?.release ?? null, why: swapped.length ? `stage swap to ${r.target?.release} not committed: the agent swaps ${r.active?.release}'s stage back in, all VMs at once` : `stage swap to ${r.target?.release} prepared, not made: the agent drops it` };
  }
  if (r.state === 'switching' || r.state === 'preparing' || r.state === 'failed') {
    const moved = vms.filter((v) => v.moved).map((v) => v.vm);
    if (onlyVm) return { host, action: moved.length ? 'move-back' : 'nothing', vms: moved, from: r.target?.release ?? null, to: r.active?.release ?? null, why: moved.length ? `${onlyVm} runs on the new generation; the old one still serves the host` : `${onlyVm} never left ${r.active?.release}` };
    return { host, action: 'retire-target', vms: moved, from: r.target?.release ?? null, to: r.active?.release ?? null, why: `upgrade to ${r.target?.release} not committed: the agent moves ${moved.length ? moved.join(', ') : 'no VM'} back and stops the new generation` };
  }
  if (r.state !== 'idle') {
    blockers.push(`${host} is ${r.state}: wait for it to finish`);
    return null;
  }
  if (!prev || prev === r.active?.release) return { host, action: 'nothing', vms: [], from: r.active?.release ?? null, to: r.active?.release ?? null, why: `${host} already runs ${r.active?.release}${prev ? '' : ' and no campaign moved it'}` };
  if (onlyVm) {
    blockers.push(`${host} is committed on ${r.active?.release}: one VM alone cannot go back to ${prev} (the old generation is stopped); roll back the host`);
    return null;
  }
  if (!r.releases.includes(prev)) {
    blockers.push(`${host}: release ${prev} is no longer installed`);
    return null;
  }
  return { host, action: 'downgrade', vms: r.vms.map((v) => v.vm), from: r.active?.release ?? null, to: prev, why: `${host} was committed on ${r.active?.release}: ${prev} is started beside it and each VM handed back (or its stage swapped back in place, where the agent can), then committed` };
}

export function previewRollback(scope: RollbackScope, d: RollbackDeps): RollbackPlan {
  const blockers: string[] = [];
  const steps: Step[] = [];
  const add = (s: Step | null) => s && steps.push(s);
  if (scope.level === 'vm' || scope.level === 'host') {
    add(hostStep(d.conn(scope.host), scope.host, d.previousRelease(scope.host), blockers, scope.level === 'vm' ? scope.vm : undefined));
  } else {
    const c = d.campaign(scope.campaign);
    if (!c) blockers.push(`no campaign ${scope.campaign}`);
    else {
      // later waves first: the reverse of the order they moved in
      const hosts = c.hosts.filter((h) => scope.level === 'campaign' || h.wave === scope.wave).sort((a, b) => b.wave - a.wave);
      if (scope.level === 'wave' && !c.plan.waves[scope.wave]) blockers.push(`campaign ${c.id} has no wave ${scope.wave}`);
      for (const h of hosts) add(hostStep(d.conn(h.host), h.host, h.from, blockers));
    }
  }
  return { scope, steps, blockers };
}

/** One host's step. A downgrade is a whole upgrade to the old release, by the one host-upgrade
 * driver: in the mode its agent recommends, every move approved by the rollback itself (the
 * operator approved the plan, with its reason), no budget (the way back is taken regardless). */
async function runStep(conn: HostConn, s: Step, approval: Decision, sign: RollbackDeps['sign']): Promise<void> {
  if (s.action === 'move-back') await conn.request(agent.upgradeRollback, { vms: s.vms });
  else if (s.action === 'retire-target') await conn.request(agent.upgradeRollback, {});
  else if (s.action === 'downgrade') {
    const r = await upgradeHost(
      conn,
      { release: s.to!, mode: 'auto', approval: 'each', budget: null, denied: [], keeper: null, signing: { campaign: `rollback-${approval.at}`, sign: (f) => sign(s.host, f), auto: null } },
      { signal: new AbortController().signal, gate: async () => undefined, ask: async () => approval, preparing: () => undefined, switching: () => undefined, vm: () => undefined },
    );
    if (r.outcome === 'failed') throw new Error(r.error);
  }
}

/** Execute a previewed plan (refused if it has blockers), then verify every VM it touched. */
export async function runRollback(plan: RollbackPlan, d: RollbackDeps, approval: Decision): Promise<RollbackResult> {
  if (plan.blockers.length) return { plan, ok: false, verify: [], errors: plan.blockers };
  const errors: string[] = [];
  for (const s of plan.steps) {
    const conn = d.conn(s.host);
    if (!conn) continue;
    try {
      await runStep(conn, s, approval, d.sign);
    } catch (e) {
      errors.push(`${s.host}: ${(e as Error).message}`);
      break; // stop means stop: the next host is not touched after a failure
    }
  }
  // let the agents' rate samples cover the time after the last move
  await sleep(2500);
  const verify: RollbackResult['verify'] = [];
  for (const s of plan.steps) {
    const conn = d.conn(s.host);
    if (!conn) continue;
    try {
      await conn.refresh(false);
    } catch (e) {
      errors.push(`${s.host}: cannot verify: ${(e as Error).message}`);
      continue;
    }
    const scope = plan.scope;
    const vms = scope.level === 'vm' ? conn.row.vms.filter((v) => v.vm === scope.vm) : conn.row.vms;
    for (const v of vms) {
      const recent = (conn.samples.get(v.vm) ?? []).filter((x) => x.t > Date.now() - 2500);
      const rx = recent.length ? recent.reduce((n, x) => n + x.rx_pps, 0) / recent.length : null;
      verify.push({ host: s.host, vm: v.vm, serving: v.serving, release: v.release, rx_pps: rx === null ? null : Math.round(rx), traffic: rx !== null && rx > 0 });
      if (s.to && v.release !== s.to && s.action !== 'nothing') errors.push(`${s.host}/${v.vm} is on ${v.release ?? 'no generation'}, not ${s.to}`);
    }
  }
  const ok = errors.length === 0 && verify.every((v) => v.traffic);
  return { plan, ok, verify, errors };
}
