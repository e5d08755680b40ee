// The per-host upgrade state machine (DESIGN.md §6).
//   idle --prepare--> preparing --> switching --commit--> committing --> idle (target is active)
//                                      |  ^ switch/rollback of single VMs
//                                      +--abort / rollback all--> aborting --> idle (old stays)
// Every transition is written to the journal before it is acted on. A new agent reads the
// journal, asks the keeper where each VM really is, and finishes or undoes whatever was under
// way (recover()). The keeper moves a VM atomically (or puts it back), so a VM is never left
// half-moved; the journal makes sure none is silently skipped.
//
// Swap mode (modes.ts says when it may be used) runs the same states inside one generation:
// prepare loads and checks the target's stage beside the running one (lib/load), the one switch
// replaces the stage under every VM at once (lib/swap), rollback puts the old one back
// (lib/rollback), commit only records it. No generation is started or stopped.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ModeChoice, UpgradePlan, UpgradeState, UpgradeStatus } from '../../../protocol/agent.js';
import type { AgentConfig, UpgradeMode, VmEntry } from '../../../protocol/files.js';
import { figures, judge, type Budget, type MeasuredParts, type Measurement } from '../../../protocol/measure.js';
import { dp } from '../../../protocol/native/dp.js';
import { keeper } from '../../../protocol/native/keeper.js';
import { ConfigInventory, listReleases, stagePath, type VmInventory } from './config.js';
import { datapathOf, kindOf, type Datapath } from './datapath.js';
import { activePorts, discover, linkActive, type Discovery, type Refused, type Unmanaged } from './discover.js';
import { AgentFailure, derive, type Approve, type Derived, type GenRef } from './derive.js';
import { Journal, sha256hex, type Actor } from './journal.js';
import { verifyApproval, type Expect } from './approvers.js';
import type { SignedApproval } from '../../../protocol/approval.js';
import { ReleaseRefused, SIGNATURE, verifyReleaseDir } from './release.js';
import { planModes, prepareSwap, swapStage } from './stageSwap.js';
import { alive, Supervisor } from './supervisor.js';
import { FailoverWatch, keeperLost, restore, restoreKeeper } from './failover.js';
import { recoverKeeperUpgrade } from './keeperUpgrade.js';
import { HostLock } from './hostLock.js';
import type { LossSpan, TrafficWitness } from './witness.js';

export { AgentFailure };

export class HostAgent {
  readonly sup: Supervisor;
  readonly journal: Journal;
  private readonly inventory: VmInventory;
  private readonly lock: HostLock;
  private chain: Promise<unknown> = Promise.resolve();
  private busy = 0;
  /** VM ports of an OVS-DPDK host the last discovery could not take (discover.ts) */
  private unmanaged: Unmanaged[] = [];
  /** ports whose taking failed, not tried again until they change */
  private readonly refused: Refused = new Map();
  /** the witness counting what the VMs lose over the upgrade under way (DESIGN.md §10) */
  private span: { loss: LossSpan; seq: number; t0: number } | null = null;

  constructor(
    readonly root: string,
    readonly cfg: AgentConfig,
    readonly notify: (s: UpgradeStatus, m?: Measurement) => void = () => undefined,
    /** what sees the VMs' traffic around a switch (the lab probe), if anything */
    readonly witness: TrafficWitness | null = null,
    /** the SSH session this agent serves: named in every journal line it writes */
    actor: Actor | null = null,
  ) {
    this.sup = new Supervisor(root, cfg);
    this.journal = new Journal(`${root}/var/journal.jsonl`, actor);
    this.inventory = new ConfigInventory(cfg);
    this.lock = new HostLock(root);
  }

  get d(): Derived {
    return derive(this.journal.entries());
  }

  /** True while an operation runs (the CLI entry waits for it before exiting). */
  get working(): boolean {
    return this.busy > 0;
  }

  /** Run one mutating operation at a time, in order, and none while another agent of the host
   * runs one (hostLock.ts). */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = async () => {
      this.busy++;
      try {
        return await this.lock.hold(fn);
      } finally {
        this.busy--;
      }
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** The host's VMs: those its config lists, then those found in its OVS DB (discover.ts). */
  vms(): VmEntry[] {
    const listed = this.inventory.list();
    return [...listed, ...[...this.d.found.values()].filter((v) => !listed.some((x) => x.name === v.name))];
  }

  /** Whether the active generation is OVS-DPDK's (whose DB the VMs are found in). */
  onOvs(): boolean {
    const a = this.d.active;
    return a !== null && kindOf(this.root, a.release) === 'ovs-dpdk';
  }

  /** Take the VMs plugged into (or unplugged from) an OVS-DPDK host's DB since the last look;
   * run inside serial(). light: the periodic look, which leaves the target's OpenFlow state
   * to the look before each step (comparing it costs ~0.3 s of CPU here). */
  async discover(light = false): Promise<Discovery> {
    const r = await discover(this, this.refused, light);
    this.unmanaged = r.unmanaged;
    if (r.found.length > 0 || r.gone.length > 0) {
      console.error(`hitless-agent: ${[...r.found.map((v) => `${v} found`), ...r.gone.map((v) => `${v} gone`)].join(', ')}`);
      this.notify(await this.status());
    }
    return r;
  }

  /** Handle generation deaths from now on (failover.ts): record them, restore a standby. */
  async watch(): Promise<FailoverWatch> {
    await this.serial(() => recoverKeeperUpgrade(this));
    const w = new FailoverWatch(this);
    await w.start();
    // one that died while no agent ran
    await w.check(true);
    return w;
  }

  release(version: string): string {
    const r = listReleases(this.root).find((x) => x.version === version);
    if (!r) throw new AgentFailure('unknown-release', `release ${version} is not installed under ${this.root}/releases`);
    // never started as something it may not be
    if (r.unknown_kind) throw new AgentFailure('unknown-release', `release ${version} cannot run here: ${r.manifest_error}`);
    return version;
  }

  /** Before a generation starts from a release: what runs is what was signed (release.ts),
   * checked again here and not only at install, as files under releases/ may have changed
   * since. A release without a signature runs only where the config allows unsigned ones. */
  async trusted(version: string): Promise<void> {
    const dir = join(this.root, 'releases', version);
    if (this.cfg.unsigned_releases && !existsSync(join(dir, SIGNATURE))) return;
    await verifyReleaseDir(dir, this.cfg.release_signers).catch((e: Error) => {
      throw e instanceof ReleaseRefused ? new AgentFailure('unknown-release', `release ${version} is refused: ${e.message}`) : e;
    });
  }

  nextGen(release: string): string {
    return `${release}-${this.journal.seq + 1}`.slice(0, 32);
  }

  /** Bring the host up on release (idempotent when it already runs). */
  async start(version: string): Promise<void> {
    const d = this.d;
    if (d.active && this.sup.genAlive(d.active.gen)) {
      // running: with a keeper that holds its sessions (one lost is started and given them back)
      const lost = await keeperLost(this);
      if (lost) await restoreKeeper(this, lost);
      return;
    }
    this.release(version);
    await this.trusted(version);
    const gen = this.nextGen(version);
    this.journal.append({ type: 'start', gen, release: version });
    const k = await this.sup.keeper();
    await this.datapath(version).start({ gen, release: version, uplink: this.cfg.uplinks[0], beside: null, vms: this.vms() });
    for (const v of this.vms()) {
      // a frontend that is the server (QEMU server=on): the keeper connects to its socket
      await k.request(keeper.vmAdd, { vm: v.name, gen, mac: v.mac, ...(v.frontend_socket ? { socket: v.frontend_socket, client: true } : {}) }).catch((e: Error) => {
        if (!/exists/.test(e.message)) throw e;
      });
    }
    await this.discover();
  }

  /** The datapath kind that runs a release's generations (datapath.ts). */
  datapath(release: string): Datapath {
    return datapathOf(this.root, this.cfg, this.sup, kindOf(this.root, release), () => this.vms());
  }

  /** The release generation gen was started from (the journal's last word on it). */
  releaseOf(gen: string): string | null {
    for (const e of [...this.journal.entries()].reverse()) if ((e.type === 'start' || e.type === 'prepare' || e.type === 'restore') && e.gen === gen) return e.release;
    return null;
  }

  private datapathOfGen(gen: string): Datapath {
    const r = this.releaseOf(gen);
    return r ? this.datapath(r) : datapathOf(this.root, this.cfg, this.sup, 'hitless-dp', () => this.vms());
  }

  /** What is wrong on this host right now: dead processes, VMs without their frontend. */
  async health(): Promise<string[]> {
    const d = this.d;
    const problems: string[] = [];
    if (d.active === null) return ['no datapath generation was started on this host (host/start)'];
    if (!alive(this.sup.keeperPid())) problems.push('hitless-keeper is not running');
    if (!this.sup.genAlive(d.active.gen)) problems.push(`active generation ${d.active.gen} is not running`);
    if (d.target && d.mode !== 'swap' && d.state !== 'preparing' && !this.sup.genAlive(d.target.gen)) problems.push(`target generation ${d.target.gen} is not running`);
    if (d.exposed) problems.push(`exposed: ${d.exposed.why}; no standby runs yet`);
    for (const g of [d.active, d.target]) if (g && this.sup.genAlive(g.gen)) problems.push(...this.datapathOfGen(g.gen).problems(g.gen));
    for (const u of this.unmanaged) problems.push(`port ${u.port} is not behind the keeper: ${u.why}`);
    if (problems.length === 0) {
      const s = await this.status();
      for (const v of s.vms) if (!v.connected) problems.push(`${v.vm}: no frontend connected`);
    }
    return problems;
  }

  async status(): Promise<UpgradeStatus> {
    const d = this.d;
    let sessions: { vm: string; serving?: string | null | undefined; connected: boolean }[] = [];
    let standby: string | null = null;
    try {
      // a status is read, never a reason to start a keeper (a host with nothing started idles)
      if (!alive(this.sup.keeperPid())) throw new Error('no keeper runs');
      const k = await this.sup.keeper();
      sessions = (await k.request(keeper.sessionList, {})).sessions;
      standby = (await k.request(keeper.genList, {})).gens.find((g) => g.standby)?.gen ?? null;
    } catch {
      sessions = [];
    }
    return {
      host: this.cfg.host,
      state: d.state,
      mode: d.mode,
      active: d.active ? { ...d.active, core: d.core ?? d.active.release, kind: kindOf(this.root, d.active.release) } : null,
      target: d.target ? { ...d.target, core: d.mode === 'swap' ? (d.core ?? d.target.release) : d.target.release, kind: kindOf(this.root, d.target.release) } : null,
      approve: d.approve,
      budget: d.budget,
      vms: this.vms().map((v) => {
        const s = sessions.find((x) => x.vm === v.name);
        const moved = d.mode === 'swap' ? d.swapped : d.moved.has(v.name);
        return { vm: v.name, serving: s?.serving ?? null, connected: s?.connected ?? false, moved, measurement: d.moved.get(v.name) ?? null };
      }),
      last_outcome: d.lastOutcome,
      error: d.error,
      journal_seq: this.journal.seq,
      standby,
      exposed: d.exposed,
      failovers: d.failovers.slice(-10),
      unmanaged: this.unmanaged,
      loss: d.loss,
    };
  }

  private need(states: UpgradeState[], what: string): Derived {
    const d = this.d;
    if (!states.includes(d.state)) throw new AgentFailure('invalid-state', `${what} needs state ${states.join(' or ')}; the host is ${d.state}`);
    return d;
  }

  /** The ways to reach version from here (modes.ts judges; stageSwap.ts gathers the facts). */
  plan(version: string): Promise<UpgradePlan> {
    return planModes(this, version);
  }

  /** Get ready to move to version: by handoff (start the target generation beside the active
   * one and pre-load every session on it) or by swap (check the target's stage). */
  async prepare(version: string, approve: Approve, choice: ModeChoice = 'handoff', budget: Budget | null = null, campaign: string | null = null, signed?: SignedApproval): Promise<void> {
    this.need(['idle'], 'upgrade/prepare');
    // auto mode moves every VM without asking again: its budget is what the operator approves
    if (approve !== 'each') await this.approval(signed, { kinds: ['auto', 'wave'], decision: 'approve', vms: [], release: version, campaign, budget: approve.auto });
    // the target is started with every VM plugged until now
    await this.discover();
    const d = this.d;
    if (!d.active || !this.sup.genAlive(d.active.gen)) throw new AgentFailure('invalid-state', 'no active generation runs on this host (host/start first)');
    this.release(version);
    const plan = await this.plan(version);
    const mode: UpgradeMode = choice === 'auto' ? plan.recommended : choice;
    const option = plan.modes.find((m) => m.mode === mode)!;
    if (!option.available) throw new AgentFailure('invalid-state', `${mode} cannot take ${this.cfg.host} to ${version}: ${option.reason}`);
    const judged = budget ?? (approve === 'each' ? null : approve.auto);
    await this.openSpan();
    if (mode === 'swap') return prepareSwap(this, version, approve, d.active, judged, campaign).catch(async (e: unknown) => {
      await this.closeSpan('aborted');
      throw e;
    });
    const gen = this.nextGen(version);
    this.journal.append({ type: 'prepare', gen, release: version, approve, mode, budget: judged, campaign });
    this.notify(await this.status());
    const uplink = this.cfg.uplinks.length === 2 ? this.cfg.uplinks[(this.journal.entries().filter((e) => e.type === 'start' || e.type === 'committed').length) % 2] : this.cfg.uplinks[0];
    const k = await this.sup.keeper();
    try {
      await this.startBeside(gen, version, d.active.gen, uplink);
      const { sessions } = await k.request(keeper.sessionList, {});
      for (const s of sessions) if (s.connected && s.movable) await k.request(keeper.sessionPreload, { vm: s.vm, gen });
    } catch (e) {
      // nothing moved yet: the target goes, the host stays as it was, and says why
      await k.request(keeper.genDetach, { gen }).catch(() => undefined);
      await this.retire(gen, d.active.gen).catch(() => undefined);
      const why = (e as Error).message;
      this.journal.append({ type: 'prepare-failed', error: why });
      await this.closeSpan('aborted');
      this.notify(await this.status());
      throw new AgentFailure('failed', `${this.cfg.host}: ${version} (generation ${gen}) could not be started beside ${d.active.gen}: ${why}; the host stays on ${d.active.release}, its VMs untouched`);
    }
    this.journal.append({ type: 'prepared' });
    this.notify(await this.status());
  }

  /** Start counting what the VMs lose from here to the upgrade's end (the witness's span),
   * journaled so that whichever agent ends the upgrade counts all of it. */
  private async openSpan(): Promise<void> {
    this.span = null;
    const vms = this.vms().map((v) => v.name);
    const loss = await this.witness?.span(vms).catch(() => null);
    if (!loss) return;
    const e = this.journal.append({ type: 'span', vms, baseline: loss.baseline });
    this.span = { loss, seq: e.seq, t0: Date.parse(e.t) };
  }

  /** The span of the upgrade under way as the journal has it (opened by an agent before this
   * one: restarted, or upgraded mid-campaign), or null when none was opened or it was closed. */
  private journaledSpan(): { loss: LossSpan; seq: number; t0: number } | null {
    if (!this.witness) return null;
    const all = this.journal.entries();
    const open = [...all].reverse().find((e) => e.type === 'span');
    // closed already, or the span of an earlier upgrade (another prepare since this one's)
    if (!open || open.type !== 'span' || all.some((e) => e.type === 'loss' && e.seq > open.seq)) return null;
    if (all.filter((e) => e.type === 'prepare' && e.seq > open.seq).length !== 1) return null;
    try {
      return { loss: this.witness.resumeSpan(open.vms, open.baseline), seq: open.seq, t0: Date.parse(open.t) };
    } catch {
      return null;
    }
  }

  /** The upgrade ended: journal what the VMs lost over it, when a witness counted it from its
   * prepare (this agent or one before it: the span is in the journal). */
  private async closeSpan(outcome: 'committed' | 'rolled-back' | 'aborted'): Promise<void> {
    const s = this.span ?? this.journaledSpan();
    this.span = null;
    if (!s || !this.journal.entries().some((e) => e.type === 'prepare' && e.seq > s.seq)) return;
    const r = await s.loss.end().catch(() => null);
    if (r) this.journal.append({ type: 'loss', loss: { ...r, seconds: Math.round(Date.now() - s.t0) / 1000, outcome } });
  }

  /**
   * Start generation gen of release beside the one running (its peer link offered by that one,
   * its learned FDB carried over), attached to the keeper as the standby: for a prepare, and for
   * a replacement after a death (failover.ts; with nothing beside it when none runs).
   */
  async startBeside(gen: string, release: string, beside: string | null, uplink: string | undefined): Promise<void> {
    await this.trusted(release);
    const k = await this.sup.keeper();
    await this.datapath(release).start({ gen, release, uplink, beside, vms: this.vms() });
    await k.request(keeper.failoverStandby, { gen });
  }

  /** Move one VM to gen (the target, or back to the active one) and measure the switch: the
   * keeper's window, the datapath's gap and drops, and the witness's view when there is one;
   * the figures and the verdict against the host's budget follow from those (protocol/measure). */
  private async move(vm: string, to: GenRef, from: GenRef): Promise<Measurement> {
    if (!this.vms().some((v) => v.name === vm)) throw new AgentFailure('unknown-vm', `no VM ${vm} on host ${this.cfg.host}`);
    const k = await this.sup.keeper();
    this.journal.append({ type: 'switch', vm, to: to.gen });
    const watch = await this.witness?.begin([vm]) ?? null;
    const dropsBefore = await this.drops(vm, [from.gen, to.gen]);
    let r;
    const target = this.datapathOfGen(to.gen);
    const entry = this.vms().find((v) => v.name === vm)!;
    try {
      r = await target.switchVm(entry, from.gen, to.gen, {
        // a handoff sent before the target is ready would wait inside the VM's break
        ready: async () => {
          const pre = await k.request(keeper.sessionPreload, { vm, gen: to.gen }).catch(() => null);
          if (pre && pre.ready_in_ns > 0) await new Promise((res) => setTimeout(res, pre.ready_in_ns / 1e6));
        },
        handoff: () => k.request(keeper.handoffStart, { vm, gen: to.gen }),
      });
    } catch (e) {
      watch?.cancel();
      this.journal.append({ type: 'switch-failed', vm, to: to.gen, error: (e as Error).message });
      throw new AgentFailure('failed', `${vm}: ${(e as Error).message}`);
    }
    const parts: MeasuredParts = {
      vm,
      mode: 'handoff',
      from: from.gen,
      to: to.gen,
      t_ns: r.timing.resumed_ns,
      window_us: r.timing.window_ns / 1000,
      phases_us: { stop: (r.timing.bases_ns - r.timing.quiesce_ns) / 1000, start: (r.timing.replayed_ns - r.timing.bases_ns) / 1000 },
      passive_gap_us: await this.passiveGap(vm, from.gen, to.gen),
      dropped: Math.max(0, (await this.drops(vm, [from.gen, to.gen])) - dropsBefore),
      rings: r.rings,
      anomalies: r.anomalies,
      witness: (await watch?.end({ start_ns: r.timing.quiesce_ns, end_ns: r.timing.resumed_ns }).catch(() => null))?.get(vm) ?? null,
    };
    const m: Measurement = { ...parts, ...figures(parts, this.d.budget) };
    this.journal.append({ type: 'switched', vm, to: to.gen, measurement: m });
    this.notify(await this.status(), m);
    return m;
  }

  /** Every frame the generations dropped for the VM (any reason), summed. */
  async drops(vm: string, gens: string[]): Promise<number> {
    let n = 0;
    for (const g of new Set(gens)) {
      try {
        n += (await this.datapathOfGen(g).counters(g, vm)).get(vm)?.drops ?? 0;
      } catch {
        /* a generation that is gone dropped nothing more */
      }
    }
    return n;
  }

  /** Last packet the old generation moved for the VM -> first packet the new one moved. */
  private async passiveGap(vm: string, from: string, to: string): Promise<number | null> {
    try {
      const a = (await this.datapathOfGen(from).counters(from, vm)).get(vm);
      let b = (await this.datapathOfGen(to).counters(to, vm)).get(vm);
      for (let i = 0; i < 10 && b && b.first_ns === 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
        b = (await this.datapathOfGen(to).counters(to, vm)).get(vm);
      }
      // a kind that keeps no per-port times (OVS) has no datapath gap: the keeper's window
      // and the witness measure its switches
      if (!a || !b || a.last_ns === null || b.first_ns === null) return null;
      if (a.last_ns === 0 || b.first_ns === 0) return null;
      return Math.max(0, b.first_ns - a.last_ns) / 1000;
    } catch {
      return null;
    }
  }

  /** Verify a signed approval of this request against the host's approvers file (approvers.ts)
   * and journal it (signer, signed text) before anything is done on it. Without an approvers
   * file nothing is required. */
  async approval(signed: SignedApproval | undefined, e: Omit<Expect, 'host' | 'used'>): Promise<void> {
    const used = (digest: string) => this.journal.entries().find((x) => x.type === 'approval' && sha256hex(x.signature) === digest)?.seq ?? null;
    const v = await verifyApproval(this.root, signed, { ...e, host: this.cfg.host, used });
    if (!v) return;
    this.journal.append({ type: 'approval', decision: v.payload.decision, kind: v.payload.kind, vms: v.payload.vms, signer: v.signer.principal, fingerprint: v.signer.fingerprint, payload: signed!.payload, signature: signed!.signature });
  }

  /** The campaign the upgrade under way was prepared for (null: none was named). */
  private campaign(): string | null {
    for (const e of [...this.journal.entries()].reverse()) if (e.type === 'prepare') return e.campaign;
    return null;
  }

  /** An operator's signed denial of these VMs' move: journaled; nothing moves. */
  async deny(vms: string[], signed: SignedApproval): Promise<void> {
    const d = this.need(['switching'], 'upgrade/deny');
    await this.approval(signed, { kinds: ['vm', 'host'], decision: 'deny', vms, release: d.target!.release, campaign: this.campaign() });
  }

  async switchVms(vms: string[], signed?: SignedApproval): Promise<Measurement[]> {
    const d0 = this.need(['switching'], 'upgrade/switch');
    await this.approval(signed, { kinds: d0.mode === 'swap' ? ['host'] : ['vm', 'host'], decision: 'approve', vms, release: d0.target!.release, campaign: this.campaign() });
    await this.discover();
    const d = this.d;
    if (d.mode === 'swap') {
      const all = this.vms().map((v) => v.name);
      const missing = all.filter((vm) => !vms.includes(vm));
      const unknown = vms.filter((vm) => !all.includes(vm));
      if (unknown.length > 0) throw new AgentFailure('unknown-vm', `no VM ${unknown.join(', ')} on host ${this.cfg.host}`);
      if (missing.length > 0)
        throw new AgentFailure('invalid-state', `a stage swap moves every VM of ${this.cfg.host} at once: approve all of them (${missing.join(', ')} missing)`);
      return d.swapped ? [] : swapStage(this, 'target');
    }
    const out: Measurement[] = [];
    for (const vm of vms) {
      if (d.moved.has(vm)) continue;
      out.push(await this.move(vm, d.target!, d.active!));
    }
    return out;
  }

  /** Auto mode: move every VM, one by one, stopping at the first one over budget. */
  async runAuto(): Promise<void> {
    const d = this.need(['switching'], 'upgrade/run');
    if (d.approve === 'each') throw new AgentFailure('invalid-state', 'the plan asks for an approval per VM (approve: each): use upgrade/switch');
    if (d.mode === 'swap') {
      if (d.swapped) return;
      const over = (await swapStage(this, 'target')).filter((m) => m.within_budget === false);
      if (over.length > 0) {
        this.journal.append({ type: 'swap-failed', to: 'target', error: `over budget on ${over.map((m) => m.vm).join(', ')}; the stage stays swapped until rollback or commit` });
        this.notify(await this.status());
      }
      return;
    }
    // one at a time, looking again before each: a VM plugged meanwhile is moved too
    for (;;) {
      await this.discover();
      const v = this.vms().find((x) => !this.d.moved.has(x.name));
      if (!v) break;
      const m = await this.move(v.name, d.target!, d.active!);
      if (m.within_budget === false) {
        this.journal.append({ type: 'switch-failed', vm: v.name, to: d.target!.gen, error: `over budget: ${judge(m, d.approve.auto)}; stopped here` });
        this.notify(await this.status());
        return;
      }
    }
  }

  /** Move VMs back to the active generation; all of them (and retire the target) when none named. */
  async rollback(vms?: string[]): Promise<void> {
    const d = this.need(['switching', 'preparing', 'failed'], 'upgrade/rollback');
    if (vms && d.mode === 'swap') throw new AgentFailure('invalid-state', 'a stage swap is rolled back for every VM at once: upgrade/rollback without vms');
    if (vms) {
      for (const vm of vms) if (d.moved.has(vm)) await this.move(vm, d.active!, d.target!);
      return;
    }
    await this.retireTarget('rolled-back');
  }

  async abort(): Promise<void> {
    this.need(['switching', 'preparing', 'failed'], 'upgrade/abort');
    await this.retireTarget('aborted');
  }

  /** Every moved VM back to the active generation, then stop the target. */
  private async retireTarget(outcome: 'rolled-back' | 'aborted'): Promise<void> {
    const d = this.d;
    this.journal.append({ type: 'abort', outcome });
    const k = await this.sup.keeper();
    if (d.target && d.mode === 'swap') {
      // the generation stays: only its stage goes back, when it was swapped; a stage loaded
      // for a swap not made is closed. A generation that is gone has no stage to put back:
      // it restarts on the active release (host/start)
      if (!this.sup.genAlive(d.active!.gen)) {
        /* nothing to undo in a process that no longer runs */
      } else if (d.swapped) await swapStage(this, 'active');
      else await (await this.sup.gen(d.active!.gen)).request(dp.libUnload, {}).catch(() => undefined);
    } else if (d.target) {
      for (const vm of d.moved.keys()) await this.move(vm, d.active!, d.target);
      await k.request(keeper.genDetach, { gen: d.target.gen }).catch(() => undefined);
      await this.retire(d.target.gen, d.active?.gen ?? null);
    }
    this.journal.append({ type: 'aborted', outcome });
    await this.closeSpan(outcome);
    this.notify(await this.status());
  }

  /** All VMs are on the target: stop the old generation; the target becomes active. */
  async commit(): Promise<void> {
    const d = this.need(['switching'], 'upgrade/commit');
    if (d.mode === 'swap') {
      if (!d.swapped) throw new AgentFailure('invalid-state', `${d.target!.release}'s stage has not been swapped in yet (upgrade/switch)`);
      this.journal.append({ type: 'commit' });
      this.journal.append({ type: 'committed' });
      await this.closeSpan('committed');
      this.notify(await this.status());
      return;
    }
    await this.discover();
    const s = await this.status();
    const left = s.vms.filter((v) => v.connected && v.serving !== d.target!.gen).map((v) => v.vm);
    const blocks = [
      ...(left.length > 0 ? [`not every VM is on ${d.target!.gen} yet: ${left.join(', ')}`] : []),
      ...(this.unmanaged.length > 0 ? [`${d.active!.gen} serves ports that are not behind the keeper, which its stop would cut off: ${this.unmanaged.map((u) => `${u.port} (${u.why})`).join('; ')}`] : []),
    ];
    if (blocks.length > 0) throw new AgentFailure('invalid-state', blocks.join('; and '));
    // from here the cloud plugs VMs into the target's DB; one plugged into the active one since
    // the look above would be cut off with it: the commit waits for it to be taken
    if (kindOf(this.root, d.target!.release) === 'ovs-dpdk') {
      linkActive(this.root, this.sup.genDir(d.target!.gen));
      const late = ((await activePorts(this))?.ports ?? []).filter((p) => !this.vms().some((v) => v.name === p.name)).map((p) => p.name);
      if (late.length > 0) {
        linkActive(this.root, this.sup.genDir(d.active!.gen));
        throw new AgentFailure('invalid-state', `${late.join(', ')} plugged into ${d.active!.gen} during the commit: not committed; commit again once taken`);
      }
    }
    this.journal.append({ type: 'commit' });
    await this.finishCommit(d);
  }

  private async finishCommit(d: Derived): Promise<void> {
    if (d.mode === 'swap') {
      this.journal.append({ type: 'committed' });
      return;
    }
    const k = await this.sup.keeper();
    // the cloud's tooling plugs VMs into the target's DB from now on (discover.ts)
    if (kindOf(this.root, d.target!.release) === 'ovs-dpdk') linkActive(this.root, this.sup.genDir(d.target!.gen));
    await k.request(keeper.genDetach, { gen: d.active!.gen }).catch(() => undefined);
    await this.retire(d.active!.gen, d.target!.gen);
    this.journal.append({ type: 'committed' });
    await this.closeSpan('committed');
    await this.discover();
    this.notify(await this.status());
  }

  /** Stop a generation that serves no VM any more (or died); the one that stays first drops
   * its link to it (datapath.ts). */
  async retire(gen: string, stays: string | null): Promise<void> {
    await this.datapathOfGen(gen).stop(gen, stays);
  }

  /**
   * After an agent restart: finish or undo what the journal shows under way, checking the
   * keeper for where each VM really is. Returns what was done, for the log.
   */
  async recover(): Promise<string | null> {
    const done: string[] = [];
    // an interrupted step inside a commit or an abort is settled first, then the outer one
    for (let i = 0; i < 4; i++) {
      const r = await this.recoverStep();
      if (r === null) break;
      done.push(r);
    }
    return done.length ? done.join('; ') : null;
  }

  private async recoverStep(): Promise<string | null> {
    const d = this.d;
    if (!d.pending) return null;
    const e = d.pending;
    const k = await this.sup.keeper();
    switch (e.type) {
      case 'prepare':
        // a half-prepared target is stopped; the host stays on its active generation
        this.journal.append({ type: 'abort', outcome: 'aborted' });
        if (e.mode === 'swap') {
          // a stage it may have loaded ahead is closed
          if (this.sup.genAlive(e.gen)) await (await this.sup.gen(e.gen)).request(dp.libUnload, {}).catch(() => undefined);
          this.journal.append({ type: 'aborted', outcome: 'aborted' });
          return `prepare of a stage swap to ${e.release} was interrupted: nothing changed`;
        }
        await k.request(keeper.genDetach, { gen: e.gen }).catch(() => undefined);
        await this.retire(e.gen, d.active?.gen ?? null);
        this.journal.append({ type: 'aborted', outcome: 'aborted' });
        return `prepare of ${e.release} was interrupted: target stopped, host stays on ${d.active?.release}`;
      case 'switch': {
        const s = await k.request(keeper.sessionShow, { vm: e.vm }).catch(() => null);
        if (s && (s.serving === e.to || s.home === e.to)) {
          this.journal.append({ type: 'switched', vm: e.vm, to: e.to, measurement: null });
          return `${e.vm}: the interrupted switch had completed (the keeper serves it from ${e.to})`;
        }
        this.journal.append({ type: 'switch-failed', vm: e.vm, to: e.to, error: 'agent restarted; the VM had not moved' });
        return `${e.vm}: the interrupted switch had not happened; it stays where it was`;
      }
      case 'swap': {
        // where is the stage? lib/info of the generation answers (none: the generation is gone)
        const lib = this.sup.genAlive(d.active!.gen) ? await (await this.sup.gen(d.active!.gen)).request(dp.libInfo, {}).catch(() => null) : null;
        const onTarget = lib !== null && lib.stage.path === stagePath(this.root, d.target!.release);
        if (lib && (e.to === 'target') === onTarget) {
          this.journal.append({ type: 'swapped', to: e.to, measurements: null });
          return `the interrupted stage swap had completed (${lib.stage.name} ${lib.stage.version} runs)`;
        }
        const why = lib ? 'agent restarted; the stage had not changed' : `agent restarted; generation ${d.active!.gen} is not running`;
        this.journal.append({ type: 'swap-failed', to: e.to, error: why });
        return lib ? 'the interrupted stage swap had not happened; the stage is unchanged' : `the interrupted stage swap cannot be checked: ${why}`;
      }
      case 'commit':
        await this.finishCommit(d);
        return 'finished an interrupted commit';
      case 'restore':
        // a replacement was being started: start another (the half-started one goes)
        await (await this.sup.keeper()).request(keeper.genDetach, { gen: e.gen }).catch(() => undefined);
        await this.retire(e.gen, null);
        this.journal.append({ type: 'restore-failed', replaces: e.replaces, error: 'agent restarted during the restore' });
        await restore(this, e.replaces, process.hrtime.bigint());
        return `restored a standby for ${e.replaces} (the restore was interrupted)`;
      case 'abort':
        await this.retireTarget(e.outcome);
        return `finished an interrupted ${e.outcome === 'aborted' ? 'abort' : 'rollback'}`;
      default:
        return null;
    }
  }
}
