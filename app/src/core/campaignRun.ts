// Running a campaign: wave after wave (the canary first), the hosts of a wave side by side,
// each host taken to the release by the one host-upgrade driver (hostUpgrade.ts). In each-vm
// mode every VM waits for an operator's approval (a denied VM stays on the old generation and
// its host is held, not committed; a host moved by stage swap asks once for all its VMs); in
// each-wave mode a wave waits for one approval, then its hosts' agents move the VMs within the
// budget on their own, as in auto mode. Anything over budget, failed or unreachable stops the
// campaign after the current wave's hosts ("stop means stop"); resume picks up where the hosts
// really are, from their agents. Pause holds before the next VM (or the next host in agent-driven
// modes) at campaign, wave or host level; abort undoes every host not yet committed; stop ends
// the run and leaves every host where it is (resumable). The campaign is saved on every change.
// Nothing here polls: pauses wait on a signal, moves on the agents' pushed state.
import { randomUUID } from 'node:crypto';
import { agent } from '../../../protocol/agent.js';
import type { Approval, Campaign, CampaignHost, ControlScope, Decision, KeeperStep, Plan } from '../../../protocol/console.js';
import { headline, type Measurement } from '../../../protocol/measure.js';
import type { z } from 'zod';
import type { SignedApproval } from '../../../protocol/approval.js';
import { contextDigest, type ApprovalFacts } from './approvalSign.js';
import { upgradeHost, type AgentLink, type HostResult } from './hostUpgrade.js';

export interface RunDeps {
  conn(host: string): AgentLink;
  /** queue an approval and wait for the operator (null: the campaign is stopping) */
  ask(a: Approval): Promise<Decision | null>;
  /** resolve the campaign's pending approvals (or one host's) with null */
  cancelAsks(campaign: string, host?: string): void;
  changed(c: Campaign): void;
  audit(action: string, detail: Record<string, unknown>): void;
  /** sign an operator's decision for a host's agent (null: no key to sign with) */
  sign(host: string, facts: ApprovalFacts): Promise<SignedApproval | null>;
}

type Scope = z.infer<typeof ControlScope>;

class Aborted extends Error {}
class HostAborted extends Error {}

/** Wakes whoever waits on it (a paused gate) when the operator changes something. */
class Signal {
  private waiters: (() => void)[] = [];
  wait(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }
  fire(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

const FINAL = ['committed', 'skipped', 'held', 'aborted', 'rolled-back'];

export class CampaignRun {
  readonly c: Campaign;
  private running: Promise<void> | null = null;
  private aborting = false;
  private stopping: string | null = null;
  private detached = false;
  private ctl = new AbortController();
  private readonly wake = new Signal();

  constructor(
    planOrCampaign: Plan | Campaign,
    private readonly deps: RunDeps,
  ) {
    if ('id' in planOrCampaign) {
      this.c = planOrCampaign;
      return;
    }
    const plan = planOrCampaign;
    this.c = {
      id: `c-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, '').slice(2)}-${randomUUID().slice(0, 4)}`,
      plan,
      state: 'running',
      wave: 0,
      waves_paused: [],
      hosts: plan.waves.flatMap((w) =>
        w.hosts.map((h) => ({ host: h.host, wave: w.index, state: 'pending' as const, paused: false, from: h.from, to: plan.spec.release, mode: h.mode, vms: h.vms.map((vm) => ({ vm, state: 'pending' as const, measurement: null, decision: null })), error: null, loss: null, keeper: null })),
      ),
      started: new Date().toISOString(),
      finished: null,
      error: null,
      rollbacks: [],
      decisions: [],
    };
  }

  private changed(): void {
    if (!this.detached) this.deps.changed(this.c);
  }

  host(name: string): CampaignHost {
    const h = this.c.hosts.find((x) => x.host === name);
    if (!h) throw new Error(`campaign ${this.c.id} has no host ${name}`);
    return h;
  }

  start(): void {
    this.running ??= this.loop().finally(() => (this.running = null));
  }

  get busy(): boolean {
    return this.running !== null;
  }

  /** Resolves when the run has ended (done, stopped, failed, aborted). */
  settled(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  private async loop(): Promise<void> {
    const { waves } = this.c.plan;
    try {
      for (; this.c.wave < waves.length; this.c.wave++) {
        const w = waves[this.c.wave]!;
        const hosts = this.c.hosts.filter((h) => h.wave === w.index && !FINAL.includes(h.state));
        if (hosts.length === 0) continue;
        if (this.c.plan.spec.approval === 'each-wave') {
          await this.gate(null, w.index);
          const d = await this.askWave(w.index);
          if (d.decision === 'deny') {
            this.c.state = 'stopped';
            this.c.error = `${w.name} denied by ${d.by}: ${d.reason}`;
            return;
          }
        }
        await Promise.all(hosts.map((h) => this.runHost(h)));
        if (this.stopping !== null) throw new Aborted();
        const bad = hosts.filter((h) => h.state === 'failed');
        if (bad.length) {
          this.c.state = 'failed';
          this.c.error = `${w.name}: ${bad.map((h) => `${h.host}: ${h.error}`).join('; ')} — the campaign stopped here; later waves were not started`;
          return;
        }
        this.changed();
      }
      this.c.state = 'done';
    } catch (e) {
      if (this.stopping !== null && !this.aborting) {
        this.c.state = 'stopped';
        this.c.error = this.stopping;
      } else if (!(e instanceof Aborted)) {
        this.c.state = 'failed';
        this.c.error = (e as Error).message;
      }
    } finally {
      // a console shutting down leaves the campaign as it was: the next console finds it interrupted
      if (!this.detached) {
        if (this.c.state !== 'running' && this.c.state !== 'paused') this.c.finished = new Date().toISOString();
        this.deps.audit('campaign/finished', { campaign: this.c.id, state: this.c.state, error: this.c.error });
        this.changed();
      }
    }
  }

  /** Wait while the campaign, the wave or the host is paused; throw when aborting or stopping. */
  private async gate(h: CampaignHost | null, wave: number): Promise<void> {
    for (;;) {
      if (this.aborting || this.stopping !== null) throw new Aborted();
      if (h?.state === 'aborted') throw new HostAborted();
      const paused = this.c.state === 'paused' || this.c.waves_paused.includes(wave) || (h?.paused ?? false);
      if (!paused) return;
      await this.wake.wait();
    }
  }

  /** What the canary measured, for the approvers of later waves (headline of its rows). */
  private canary(): Approval['canary'] {
    const w = this.c.plan.waves[0];
    if (!w || w.name !== 'canary') return null;
    const h = this.c.hosts.find((x) => x.host === w.hosts[0]!.host)!;
    const ms = h.vms.flatMap((v) => (v.measurement ? [v.measurement] : []));
    const hl = headline(ms);
    return { host: h.host, vms: ms.length, max_gap_ms: hl.break_ms.max, lost: hl.lost };
  }

  /** What lets a host's agent move its VMs on its own: the wave's approval (each-wave), or the
   * campaign started in auto mode; null when each VM is asked for. */
  private autoDecision(wave: number): (Decision & { kind: 'auto' | 'wave' }) | null {
    const spec = this.c.plan.spec;
    if (spec.approval === 'each-vm') return null;
    const w = this.c.decisions.find((d) => d.kind === 'wave' && d.wave === wave);
    if (w) return { decision: w.decision, reason: w.reason, by: w.by, at: w.at, ...(w.context ? { context: w.context } : {}), kind: 'wave' };
    return { decision: 'approve', reason: `auto mode within the budget (gap ${spec.budget.max_gap_ms} ms, ${spec.budget.max_lost} lost)`, by: 'campaign start', at: this.c.started, context: contextDigest(this.c.plan), kind: 'auto' };
  }

  private async askWave(wave: number): Promise<Decision> {
    const w = this.c.plan.waves[wave]!;
    const d = await this.deps.ask({
      id: `a-${randomUUID().slice(0, 8)}`,
      campaign: this.c.id,
      kind: 'wave',
      host: null,
      vm: null,
      wave,
      wave_name: w.name,
      asked: new Date().toISOString(),
      release: this.c.plan.spec.release,
      budget: this.c.plan.spec.budget,
      canary: wave === 0 ? null : this.canary(),
      previous: null,
      moves: w.hosts.map((h) => ({ host: h.host, vms: h.vms })),
      mode: w.hosts.every((h) => h.mode === 'swap') ? 'swap' : 'handoff',
      predicted_break_us: Math.max(0, ...w.hosts.map((h) => h.predicted_break_us ?? 0)) || null,
      keeper: null,
    });
    if (!d) throw new Aborted();
    this.c.decisions.push({ ...d, kind: 'wave', wave, wave_name: w.name, host: null, vm: null });
    return d;
  }

  private fail(h: CampaignHost, error: string): void {
    if (this.detached) return;
    h.state = 'failed';
    h.error = error;
    this.deps.audit('campaign/host-failed', { campaign: this.c.id, host: h.host, error });
    this.changed();
  }

  /** One host through the driver, from wherever its agent says it is; resume calls it again. */
  private async runHost(h: CampaignHost): Promise<void> {
    const spec = this.c.plan.spec;
    const vmOf = (vm: string) => h.vms.find((v) => v.vm === vm);
    let r: HostResult;
    try {
      await this.gate(h, h.wave);
      h.error = null;
      r = await upgradeHost(
        this.deps.conn(h.host),
        {
          release: spec.release,
          mode: h.mode,
          approval: spec.approval === 'each-vm' ? 'each' : 'auto',
          budget: spec.budget,
          denied: h.vms.filter((v) => v.state === 'denied').map((v) => v.vm),
          // (once replaced, not again on resume; the driver also asks the agent whether it is still due)
          keeper: h.keeper ? null : (this.c.plan.waves.flatMap((w) => w.hosts).find((x) => x.host === h.host)?.keeper ?? null),
          signing: {
            campaign: this.c.id,
            sign: (facts) => this.deps.sign(h.host, facts),
            auto: this.autoDecision(h.wave),
          },
        },
        {
          signal: this.ctl.signal,
          gate: () => this.gate(h, h.wave),
          ask: (vms, previous) => this.askOnHost(h, vms.length === 1 && h.mode !== 'swap' ? vms[0]! : null, previous),
          askKeeper: (step) => this.askOnHost(h, null, null, step),
          keeper: (k) => {
            if (!k) return;
            h.keeper = k;
            this.deps.audit('campaign/keeper-upgraded', { campaign: this.c.id, host: h.host, from_version: k.from_version, version: k.version, pause_us: k.pause_us, sessions: k.sessions });
            this.changed();
          },
          preparing: () => {
            h.state = 'preparing';
            this.changed();
          },
          switching: () => {
            h.state = 'switching';
            this.changed();
          },
          vm: (vm, step, m, decision) => {
            // a VM the host found after the plan was made joins its host's list
            if (!vmOf(vm)) h.vms.push({ vm, state: 'pending', measurement: null, decision: null });
            const v = vmOf(vm);
            if (!v || (step === 'moved' && v.state === 'moved' && v.measurement?.t_ns === m?.t_ns)) return;
            v.state = step;
            if (m) v.measurement = m;
            if (decision) v.decision = decision;
            this.changed();
          },
        },
      );
    } catch (e) {
      // the campaign is aborting or stopping: its own code says what became of the host
      if (e instanceof Aborted || this.ctl.signal.aborted) return;
      if (e instanceof HostAborted || (h.state as string) === 'aborted') return;
      return this.fail(h, (e as Error).message);
    }
    switch (r.outcome) {
      case 'skipped':
        h.state = h.state === 'pending' ? 'skipped' : 'committed';
        return this.changed();
      case 'committed':
        h.state = 'committed';
        h.loss = r.loss;
        this.deps.audit('campaign/host-committed', { campaign: this.c.id, host: h.host, release: r.release });
        return this.changed();
      case 'held':
        h.state = 'held';
        h.error =
          h.mode === 'swap'
            ? `not committed: the stage swap was denied; ${h.host} still runs ${h.from}'s stage, with the swap prepared until the host is rolled back`
            : `not committed: ${r.denied.join(', ')} denied and still on ${h.from}; both generations run until the host is rolled back or the VM is moved`;
        return this.changed();
      case 'stopped':
        return; // the campaign stops or aborts: it says so
      case 'failed':
        return this.fail(h, r.error);
    }
  }

  /** Ask the operator about moves on host h: one VM's handoff (vm), or all its VMs at once by
   * stage swap (vm null), or the host's keeper replaced first (keeper); the decision is
   * recorded with the campaign. */
  private async askOnHost(h: CampaignHost, vm: string | null, previous: Measurement | null, keeper: KeeperStep | null = null): Promise<Decision | null> {
    const spec = this.c.plan.spec;
    const waveName = this.c.plan.waves[h.wave]!.name;
    const kind = keeper ? 'keeper' : vm === null ? 'host' : 'vm';
    const d = await this.deps.ask({
      id: `a-${randomUUID().slice(0, 8)}`,
      campaign: this.c.id,
      kind,
      host: h.host,
      vm,
      wave: h.wave,
      wave_name: waveName,
      asked: new Date().toISOString(),
      release: spec.release,
      budget: spec.budget,
      canary: h.wave === 0 ? null : this.canary(),
      previous,
      moves: [{ host: h.host, vms: vm === null ? h.vms.map((v) => v.vm) : [vm] }],
      mode: h.mode,
      predicted_break_us: keeper ? null : (this.c.plan.waves.flatMap((w) => w.hosts).find((x) => x.host === h.host)?.predicted_break_us ?? null),
      keeper,
    });
    if (!d) {
      if ((h.state as string) === 'aborted') throw new HostAborted();
      throw new Aborted();
    }
    this.c.decisions.push({ ...d, kind, wave: h.wave, wave_name: waveName, host: h.host, vm });
    return d;
  }

  /** The console is closing: stop asking, record nothing more (the hosts keep their own state). */
  detach(): void {
    this.detached = true;
    this.aborting = true;
    this.ctl.abort();
    this.wake.fire();
  }

  // ---------------------------------------------------------------- operator controls

  pause(scope: Scope): void {
    if (scope.level === 'campaign') {
      if (this.c.state !== 'running') throw new Error(`campaign/control: the campaign is ${this.c.state}, not running`);
      this.c.state = 'paused';
    } else if (scope.level === 'wave') {
      if (!this.c.plan.waves[scope.wave]) throw new Error(`campaign/control: scope.wave: no wave ${scope.wave}`);
      if (!this.c.waves_paused.includes(scope.wave)) this.c.waves_paused.push(scope.wave);
    } else this.host(scope.host).paused = true;
    this.changed();
  }

  resume(scope: Scope): void {
    if (scope.level === 'wave') this.c.waves_paused = this.c.waves_paused.filter((w) => w !== scope.wave);
    else if (scope.level === 'host') {
      const h = this.host(scope.host);
      h.paused = false;
      if (h.state === 'failed' && !this.busy) this.restart();
    } else if (this.c.state === 'paused') this.c.state = 'running';
    else if (['failed', 'stopped', 'interrupted'].includes(this.c.state)) this.restart();
    else if (this.c.state !== 'running') throw new Error(`campaign/control: a campaign that is ${this.c.state} cannot be resumed`);
    this.wake.fire();
    this.changed();
  }

  private restart(): void {
    this.c.state = 'running';
    this.c.error = null;
    this.c.finished = null;
    this.stopping = null;
    this.ctl = new AbortController();
    for (const h of this.c.hosts) if (h.state === 'failed') h.state = 'pending';
    this.start();
  }

  /** End the run now and leave every host where it is (the operator quit); resumable. */
  async stop(why: string): Promise<void> {
    if (!this.busy) return;
    this.stopping = why;
    this.deps.cancelAsks(this.c.id);
    this.wake.fire();
    await this.running?.catch(() => undefined);
  }

  /** Undo every host of the scope that is not committed (its agent moves the VMs back). */
  async abort(scope: Scope): Promise<void> {
    const hosts = scope.level === 'campaign' ? this.c.hosts : scope.level === 'wave' ? this.c.hosts.filter((h) => h.wave === scope.wave) : [this.host(scope.host)];
    if (scope.level !== 'host') {
      this.aborting = true;
      this.ctl.abort();
      this.deps.cancelAsks(this.c.id);
      this.wake.fire();
      await this.running?.catch(() => undefined);
    }
    const live = new Set(hosts.filter((h) => !['pending', 'committed', 'skipped', 'aborted', 'rolled-back'].includes(h.state)).map((h) => h.host));
    if (scope.level === 'host') {
      const h = hosts[0]!;
      if (['committed', 'skipped', 'aborted', 'rolled-back'].includes(h.state)) throw new Error(`campaign/control: ${h.host} is ${h.state}: nothing to abort (use rollback for a committed host)`);
      h.state = 'aborted'; // its runner stops at its next step
      this.deps.cancelAsks(this.c.id, h.host);
      this.wake.fire();
    }
    const errors: string[] = [];
    for (const h of hosts) {
      if (!live.has(h.host)) {
        if (h.state === 'pending') h.state = 'aborted';
        continue;
      }
      try {
        const conn = this.deps.conn(h.host);
        const st = await conn.request(agent.upgradeStatus, {});
        if (st.state !== 'idle') h.loss = (await conn.request(agent.upgradeAbort, {})).loss;
        h.state = 'aborted';
        for (const v of h.vms) if (v.state === 'moved') v.state = 'rolled-back';
        for (const v of h.vms) if (v.state === 'awaiting-approval' || v.state === 'switching') v.state = 'pending';
      } catch (e) {
        errors.push(`${h.host}: ${(e as Error).message}`);
        h.error = `abort failed: ${(e as Error).message}`;
      }
    }
    if (scope.level !== 'host') {
      this.c.state = 'aborted';
      this.c.finished = new Date().toISOString();
      this.c.error = errors.length ? `abort incomplete: ${errors.join('; ')}` : `aborted (${scope.level === 'wave' ? `wave ${scope.wave}` : 'campaign'}); hosts not yet committed were moved back`;
    }
    this.changed();
    if (errors.length) throw new Error(`campaign/control: abort incomplete: ${errors.join('; ')}`);
  }
}
