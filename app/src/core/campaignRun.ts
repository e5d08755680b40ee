// Running a campaign: wave after wave (the canary first), the hosts of a wave side by side,
// each host prepared, its VMs moved one at a time, then committed. In each-vm mode every VM
// waits for an operator's approval (a denied VM stays on the old generation and its host is
// held, not committed); in each-wave mode a wave waits for one approval, then its hosts' agents
// move the VMs within the budget on their own, as in auto mode. Anything over budget, failed or
// unreachable stops the campaign after the current wave's hosts ("stop means stop"); resume
// picks up where the hosts really are, from their agents. Pause holds before the next VM (or the
// next host in agent-driven modes) at campaign, wave or host level; abort undoes every host not
// yet committed. The campaign is saved on every change.
// A host the plan moves by stage swap asks one approval for all its VMs (they move at once).
import { randomUUID } from 'node:crypto';
import { agent, type Measurement, type UpgradeStatus } from '../../../agent/src/common/protocol.js';
import { gapMs, type Approval, type Campaign, type CampaignHost, type Decision, type Plan } from '../common/api.js';
import type { HostConn } from './hostConn.js';

export interface RunDeps {
  conn(host: string): HostConn;
  /** queue an approval and wait for the operator (null: the campaign is aborting) */
  ask(a: Approval): Promise<Decision | null>;
  /** resolve the campaign's pending approvals (or one host's) with null */
  cancelAsks(campaign: string, host?: string): void;
  changed(c: Campaign): void;
  audit(action: string, detail: Record<string, unknown>): void;
}

class Aborted extends Error {}
class HostAborted extends Error {}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function overBudget(m: Measurement, b: Plan['spec']['budget']): string | null {
  if (gapMs(m) > b.max_gap_ms) return `break ${gapMs(m).toFixed(2)} ms is over the ${b.max_gap_ms} ms budget`;
  if (m.dropped > b.max_lost) return `${m.dropped} frames lost, over the budget of ${b.max_lost}`;
  return null;
}

export class CampaignRun {
  readonly c: Campaign;
  private running: Promise<void> | null = null;
  private aborting = false;
  private detached = false;

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
        w.hosts.map((h) => ({ host: h.host, wave: w.index, state: 'pending' as const, paused: false, from: h.from, to: plan.spec.release, mode: h.mode, vms: h.vms.map((vm) => ({ vm, state: 'pending' as const, measurement: null, decision: null })), error: null })),
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

  private async loop(): Promise<void> {
    const { waves } = this.c.plan;
    try {
      for (; this.c.wave < waves.length; this.c.wave++) {
        const w = waves[this.c.wave]!;
        const hosts = this.c.hosts.filter((h) => h.wave === w.index && !['committed', 'skipped', 'held', 'aborted', 'rolled-back'].includes(h.state));
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
      if (!(e instanceof Aborted)) {
        this.c.state = 'failed';
        this.c.error = (e as Error).message;
      }
    } finally {
      // a console shutting down leaves the campaign as it was: the next console finds it interrupted
      if (this.detached) return;
      if (this.c.state !== 'running' && this.c.state !== 'paused') this.c.finished = new Date().toISOString();
      this.deps.audit('campaign/finished', { campaign: this.c.id, state: this.c.state, error: this.c.error });
      this.changed();
    }
  }

  /** Wait while the campaign, the wave or the host is paused; throw when aborting. */
  private async gate(h: CampaignHost | null, wave: number): Promise<void> {
    for (;;) {
      if (this.aborting) throw new Aborted();
      if (h?.state === 'aborted') throw new HostAborted();
      const paused = this.c.state === 'paused' || this.c.waves_paused.includes(wave) || (h?.paused ?? false);
      if (!paused) return;
      await sleep(100);
    }
  }

  private canary(): Approval['canary'] {
    const w = this.c.plan.waves[0];
    if (!w || w.name !== 'canary') return null;
    const h = this.c.hosts.find((x) => x.host === w.hosts[0]!.host)!;
    const ms = h.vms.flatMap((v) => (v.measurement ? [v.measurement] : []));
    return { host: h.host, vms: ms.length, max_gap_ms: ms.length ? Math.max(...ms.map(gapMs)) : null, lost: ms.reduce((n, m) => n + m.dropped, 0) };
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

  private absorb(h: CampaignHost, st: UpgradeStatus): void {
    for (const v of h.vms) {
      const s = st.vms.find((x) => x.vm === v.vm);
      if (s?.moved && s.measurement && v.state !== 'moved') {
        v.state = 'moved';
        v.measurement = s.measurement;
      }
    }
  }

  /** One host, from wherever its agent says it is; idempotent, so resume simply calls it again. */
  private async runHost(h: CampaignHost): Promise<void> {
    const spec = this.c.plan.spec;
    const conn = this.deps.conn(h.host);
    const wave = h.wave;
    try {
      await this.gate(h, wave);
      h.error = null;
      let st = await conn.request(agent.upgradeStatus, {});
      if (st.state === 'idle' && st.active?.release === spec.release) {
        if (h.state === 'pending') h.state = 'skipped';
        else if (h.state !== 'committed') h.state = 'committed';
        return this.changed();
      }
      if (st.state === 'idle') {
        h.state = 'preparing';
        this.changed();
        // an agent from before upgrade modes knows no `mode`: it is sent only for a swap
        st = await conn.request(agent.upgradePrepare, { release: spec.release, approve: spec.approval === 'each-vm' ? 'each' : { auto: spec.budget }, ...(h.mode === 'swap' ? { mode: h.mode } : {}) });
      } else if (st.state !== 'switching' || st.target?.release !== spec.release) {
        return this.fail(h, `the host is ${st.state}${st.target ? ` toward ${st.target.release}` : ''}, not part of this campaign's upgrade: finish or roll it back first`);
      } else if (st.mode !== h.mode) {
        return this.fail(h, `the host is already moving to ${spec.release} by ${st.mode}, the plan says ${h.mode}: finish or roll that upgrade back first`);
      }
      h.state = 'switching';
      this.absorb(h, st);
      this.changed();
      if (spec.approval === 'each-vm' && h.mode === 'swap') {
        const r = await this.swapOnApproval(h, st);
        if (r !== null) return r;
      } else if (spec.approval === 'each-vm') {
        for (const v of h.vms) {
          if (v.state === 'moved' || v.state === 'denied') continue;
          await this.gate(h, wave);
          v.state = 'awaiting-approval';
          this.changed();
          const prev = h.vms.filter((x) => x.measurement).at(-1)?.measurement ?? null;
          const d = await this.askOnHost(h, v.vm, prev);
          v.decision = d;
          if (d.decision === 'deny') {
            v.state = 'denied';
            this.changed();
            continue;
          }
          await this.gate(h, wave);
          v.state = 'switching';
          this.changed();
          st = await conn.request(agent.upgradeSwitch, { vms: [v.vm] });
          this.absorb(h, st);
          const m = st.vms.find((x) => x.vm === v.vm)?.measurement ?? null;
          if (!m) return this.fail(h, `${v.vm}: the agent reports no measurement for its switch`);
          const over = overBudget(m, spec.budget);
          if (over) {
            v.state = 'failed';
            return this.fail(h, `${v.vm}: ${over}; the host stays with both generations: roll it back or resume`);
          }
        }
      } else {
        await conn.request(agent.upgradeRun, {});
        for (;;) {
          await sleep(250);
          if (this.aborting) throw new Aborted();
          st = await conn.request(agent.upgradeStatus, {});
          this.absorb(h, st);
          this.changed();
          if (st.error) return this.fail(h, st.error);
          // the agent records an over-budget switch just after the switch itself: do not commit in between
          const over = h.vms.flatMap((v) => {
            const why = v.measurement ? overBudget(v.measurement, spec.budget) : null;
            return why ? [`${v.vm}: ${why}`] : [];
          });
          if (over.length) return this.fail(h, `${over.join('; ')}; the host is not committed: roll it back or resume`);
          if (st.vms.every((v) => v.moved || !v.connected)) break;
        }
      }
      if (h.vms.some((v) => v.state === 'denied')) {
        h.state = 'held';
        h.error =
          h.mode === 'swap'
            ? `not committed: the stage swap was denied; ${h.host} still runs ${h.from}'s stage, with the swap prepared until the host is rolled back`
            : `not committed: ${h.vms.filter((v) => v.state === 'denied').map((v) => v.vm).join(', ')} denied and still on ${h.from}; both generations run until the host is rolled back or the VM is moved`;
        return this.changed();
      }
      await this.gate(h, wave);
      st = await conn.request(agent.upgradeCommit, {});
      h.state = 'committed';
      this.deps.audit('campaign/host-committed', { campaign: this.c.id, host: h.host, release: st.active?.release ?? null });
      this.changed();
    } catch (e) {
      if (e instanceof Aborted) throw e;
      if (e instanceof HostAborted || h.state === 'aborted') return;
      this.fail(h, (e as Error).message);
    }
  }

  /** Ask the operator about moves on host h: one VM's handoff (vm), or all its VMs at once by
   * stage swap (vm null); the decision is recorded with the campaign. */
  private async askOnHost(h: CampaignHost, vm: string | null, previous: Measurement | null): Promise<Decision> {
    const spec = this.c.plan.spec;
    const waveName = this.c.plan.waves[h.wave]!.name;
    const kind = vm === null ? 'host' : 'vm';
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
      predicted_break_us: this.planned(h.host)?.predicted_break_us ?? null,
    });
    if (!d) throw (h.state as string) === 'aborted' ? new HostAborted() : new Aborted();
    this.c.decisions.push({ ...d, kind, wave: h.wave, wave_name: waveName, host: h.host, vm });
    return d;
  }

  private planned(host: string): Plan['waves'][number]['hosts'][number] | undefined {
    return this.c.plan.waves.flatMap((w) => w.hosts).find((x) => x.host === host);
  }

  /**
   * Swap mode, each-vm approval: one approval for the host (its VMs move at once), then the
   * swap; every VM's measurement is checked against the budget. Returns what runHost returns
   * when it must stop here, null to go on to the commit.
   */
  private async swapOnApproval(h: CampaignHost, st: UpgradeStatus): Promise<void | null> {
    const spec = this.c.plan.spec;
    const wave = h.wave;
    // swapped already (before a console or agent restart, whose journal may hold no figures)
    if (st.vms.every((v) => v.moved)) {
      for (const v of h.vms) v.state = 'moved';
      return null;
    }
    if (h.vms.some((v) => v.state === 'denied')) return null;
    await this.gate(h, wave);
    for (const v of h.vms) v.state = 'awaiting-approval';
    this.changed();
    const d = await this.askOnHost(h, null, null);
    for (const v of h.vms) v.decision = d;
    if (d.decision === 'deny') {
      for (const v of h.vms) v.state = 'denied';
      this.changed();
      return null;
    }
    await this.gate(h, wave);
    for (const v of h.vms) v.state = 'switching';
    this.changed();
    st = await this.deps.conn(h.host).request(agent.upgradeSwitch, { vms: h.vms.map((v) => v.vm) });
    this.absorb(h, st);
    for (const v of h.vms) {
      if (!v.measurement) return this.fail(h, `${v.vm}: the agent reports no measurement for the stage swap`);
      const over = overBudget(v.measurement, spec.budget);
      if (over) {
        v.state = 'failed';
        return this.fail(h, `${v.vm}: ${over}; the host runs ${spec.release}'s stage uncommitted: roll it back or resume`);
      }
    }
    return null;
  }

  /** The console is closing: stop asking, record nothing more (the hosts keep their own state). */
  detach(): void {
    this.detached = true;
    this.aborting = true;
  }

  // ---------------------------------------------------------------- operator controls

  pause(scope: { level: 'campaign' } | { level: 'wave'; wave: number } | { level: 'host'; host: string }): void {
    if (scope.level === 'campaign') {
      if (this.c.state !== 'running') throw new Error(`campaign/control: the campaign is ${this.c.state}, not running`);
      this.c.state = 'paused';
    } else if (scope.level === 'wave') {
      if (!this.c.plan.waves[scope.wave]) throw new Error(`campaign/control: scope.wave: no wave ${scope.wave}`);
      if (!this.c.waves_paused.includes(scope.wave)) this.c.waves_paused.push(scope.wave);
    } else this.host(scope.host).paused = true;
    this.changed();
  }

  resume(scope: { level: 'campaign' } | { level: 'wave'; wave: number } | { level: 'host'; host: string }): void {
    if (scope.level === 'wave') this.c.waves_paused = this.c.waves_paused.filter((w) => w !== scope.wave);
    else if (scope.level === 'host') {
      const h = this.host(scope.host);
      h.paused = false;
      if (h.state === 'failed' && !this.busy) this.restart();
    } else if (this.c.state === 'paused') this.c.state = 'running';
    else if (['failed', 'stopped', 'interrupted'].includes(this.c.state)) this.restart();
    else if (this.c.state !== 'running') throw new Error(`campaign/control: a campaign that is ${this.c.state} cannot be resumed`);
    this.changed();
  }

  private restart(): void {
    this.c.state = 'running';
    this.c.error = null;
    this.c.finished = null;
    for (const h of this.c.hosts) if (h.state === 'failed') h.state = 'pending';
    this.start();
  }

  /** Undo every host of the scope that is not committed (its agent moves the VMs back). */
  async abort(scope: { level: 'campaign' } | { level: 'wave'; wave: number } | { level: 'host'; host: string }): Promise<void> {
    const hosts = scope.level === 'campaign' ? this.c.hosts : scope.level === 'wave' ? this.c.hosts.filter((h) => h.wave === scope.wave) : [this.host(scope.host)];
    if (scope.level !== 'host') {
      this.aborting = true;
      this.deps.cancelAsks(this.c.id);
      await this.running?.catch(() => undefined);
    }
    const live = new Set(hosts.filter((h) => !['pending', 'committed', 'skipped', 'aborted', 'rolled-back'].includes(h.state)).map((h) => h.host));
    if (scope.level === 'host') {
      const h = hosts[0]!;
      if (['committed', 'skipped', 'aborted', 'rolled-back'].includes(h.state)) throw new Error(`campaign/control: ${h.host} is ${h.state}: nothing to abort (use rollback for a committed host)`);
      h.state = 'aborted'; // its runner stops at its next step
      this.deps.cancelAsks(this.c.id, h.host);
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
        if (st.state !== 'idle') await conn.request(agent.upgradeAbort, {});
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
