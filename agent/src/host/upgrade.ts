// The per-host upgrade state machine (DESIGN.md §6).
//   idle --prepare--> preparing --> switching --commit--> committing --> idle (target is active)
//                                      |  ^ switch/rollback of single VMs
//                                      +--abort / rollback all--> aborting --> idle (old stays)
// Every transition is written to the journal before it is acted on. A new agent reads the
// journal, asks the keeper where each VM really is, and finishes or undoes whatever was under
// way (recover()). The keeper moves a VM atomically (or puts it back), so a VM is never left
// half-moved; the journal makes sure none is silently skipped.
import type { Budget, Measurement, UpgradeState, UpgradeStatus } from '../common/protocol.js';
import { CtlClient } from '../native/ctlClient.js';
import { dp } from '../native/dpProtocol.js';
import { measured, probe, ProbeEvent, type ProbeSummary } from '../native/probeProtocol.js';
import { keeper } from '../native/keeperProtocol.js';
import { ConfigInventory, listReleases, type AgentConfig, type VmInventory } from './config.js';
import { Journal, type Stamped } from './journal.js';
import { alive, Supervisor } from './supervisor.js';

export class AgentFailure extends Error {
  constructor(
    readonly code: 'invalid-state' | 'unknown-release' | 'unknown-vm' | 'failed',
    message: string,
  ) {
    super(message);
  }
}

type Approve = 'each' | { auto: Budget };
interface GenRef {
  gen: string;
  release: string;
}

/** What the journal says, replayed. */
interface Derived {
  active: GenRef | null;
  target: GenRef | null;
  state: UpgradeState;
  approve: Approve;
  moved: Map<string, Measurement | null>; // VMs on the target
  pending: Stamped | null; // last started step without its outcome
  lastOutcome: UpgradeStatus['last_outcome'];
  error: string | null;
}

export function derive(entries: readonly Stamped[]): Derived {
  const d: Derived = { active: null, target: null, state: 'idle', approve: 'each', moved: new Map(), pending: null, lastOutcome: null, error: null };
  for (const e of entries) {
    switch (e.type) {
      case 'start':
        d.active = { gen: e.gen, release: e.release };
        break;
      case 'prepare':
        d.target = { gen: e.gen, release: e.release };
        d.approve = e.approve;
        d.state = 'preparing';
        d.moved = new Map();
        d.error = null;
        d.pending = e;
        break;
      case 'prepared':
        d.state = 'switching';
        d.pending = null;
        break;
      case 'switch':
        d.pending = e;
        break;
      case 'switched':
        if (e.to === d.target?.gen) d.moved.set(e.vm, e.measurement);
        else d.moved.delete(e.vm);
        d.pending = null;
        break;
      case 'switch-failed':
        d.error = `${e.vm}: ${e.error}`;
        d.pending = null;
        break;
      case 'commit':
        d.state = 'committing';
        d.pending = e;
        break;
      case 'committed':
        d.active = d.target;
        d.target = null;
        d.moved = new Map();
        d.state = 'idle';
        d.lastOutcome = 'committed';
        d.pending = null;
        break;
      case 'abort':
        d.state = e.outcome === 'rolled-back' ? 'rolling-back' : 'aborting';
        d.pending = e;
        break;
      case 'aborted':
        d.target = null;
        d.moved = new Map();
        d.state = 'idle';
        d.lastOutcome = e.outcome;
        d.pending = null;
        break;
      case 'failed':
        d.state = 'failed';
        d.error = e.error;
        d.pending = null;
        break;
    }
  }
  return d;
}

/**
 * The lab probe's view of one switch: frames lost on flows arriving at the VM (counter delta)
 * and the largest receive gap on them that touches the switch window. Flows leaving the VM are
 * measured by the probe at their destination, on its own host.
 */
class ProbeWatch {
  private readonly gaps: { start: number; end: number; us: number }[] = [];

  private constructor(
    private readonly ctl: CtlClient,
    private readonly vm: string,
    private readonly lostBefore: number,
  ) {}

  static async open(path: string | undefined, vm: string): Promise<ProbeWatch | null> {
    if (!path) return null;
    try {
      const ctl = await CtlClient.connect(path, 1000);
      const w = new ProbeWatch(ctl, vm, ProbeWatch.lost(await ctl.request(probe.statsShow, {}), vm));
      await ctl.subscribe((e) => {
        const g = ProbeEvent.safeParse(e);
        if (g.success && g.data.event === 'gap' && g.data.data.rx_vm === vm)
          w.gaps.push({ start: g.data.data.start_ns, end: g.data.data.end_ns, us: g.data.data.gap_us });
      });
      return w;
    } catch {
      return null; // no probe on this host: the measurement simply has no probe part
    }
  }

  private static lost(s: ProbeSummary, vm: string): number {
    return measured(s).filter((f) => f.dst === vm).reduce((n, f) => n + f.lost, 0);
  }

  async result(startNs: number, endNs: number): Promise<{ lost: number; gap_ms: number | null }> {
    await new Promise((r) => setTimeout(r, 150)); // frames from the switch arrive and gaps close
    try {
      // the probe counts a frame as lost while a later one has arrived before it: a non-zero
      // figure is sampled again until it stops falling, so a late frame is not called lost
      let lost = ProbeWatch.lost(await this.ctl.request(probe.statsShow, {}), this.vm) - this.lostBefore;
      for (let i = 0; i < 4 && lost > 0; i++) {
        await new Promise((r) => setTimeout(r, 250));
        const again = ProbeWatch.lost(await this.ctl.request(probe.statsShow, {}), this.vm) - this.lostBefore;
        if (again >= lost) break;
        lost = again;
      }
      const touching = this.gaps.filter((g) => g.start <= endNs + 2e6 && g.end >= startNs - 2e6);
      return { lost: Math.max(0, lost), gap_ms: touching.length ? Math.max(...touching.map((g) => g.us)) / 1000 : null };
    } finally {
      this.close();
    }
  }

  close(): void {
    this.ctl.close();
  }
}

export class HostAgent {
  readonly sup: Supervisor;
  readonly journal: Journal;
  private readonly inventory: VmInventory;
  private chain: Promise<unknown> = Promise.resolve();
  private busy = 0;

  constructor(
    readonly root: string,
    readonly cfg: AgentConfig,
    private readonly emit: (s: UpgradeStatus, m?: Measurement) => void = () => undefined,
  ) {
    this.sup = new Supervisor(root, cfg);
    this.journal = new Journal(`${root}/var/journal.jsonl`);
    this.inventory = new ConfigInventory(cfg);
  }

  get d(): Derived {
    return derive(this.journal.entries());
  }

  /** True while an operation runs (the CLI entry waits for it before exiting). */
  get working(): boolean {
    return this.busy > 0;
  }

  /** Run one mutating operation at a time, in order. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = async () => {
      this.busy++;
      try {
        return await fn();
      } finally {
        this.busy--;
      }
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  vms(): { name: string; mac: string }[] {
    return this.inventory.list();
  }

  private release(version: string): string {
    if (!listReleases(this.root).some((r) => r.version === version))
      throw new AgentFailure('unknown-release', `release ${version} is not installed under ${this.root}/releases`);
    return version;
  }

  private nextGen(release: string): string {
    return `${release}-${this.journal.seq + 1}`.slice(0, 32);
  }

  /** Bring the host up on release (idempotent when it already runs). */
  async start(version: string): Promise<void> {
    const d = this.d;
    if (d.active && this.sup.genAlive(d.active.gen)) {
      await this.sup.keeper();
      return;
    }
    this.release(version);
    const gen = this.nextGen(version);
    this.journal.append({ type: 'start', gen, release: version });
    const k = await this.sup.keeper();
    const ctl = await this.sup.startGen(gen, version, this.cfg.uplinks[0] ? { uplink: this.cfg.uplinks[0] } : {});
    await k.request(keeper.genAttach, { gen, run_dir: this.sup.genDir(gen) });
    for (const v of this.vms()) {
      await ctl.request(dp.vmAdd, { vm: v.name, mac: v.mac });
      await k.request(keeper.vmAdd, { vm: v.name, gen }).catch((e: Error) => {
        if (!/exists/.test(e.message)) throw e;
      });
    }
  }

  /** What is wrong on this host right now: dead processes, VMs without their frontend. */
  async health(): Promise<string[]> {
    const d = this.d;
    const problems: string[] = [];
    if (d.active === null) return ['no datapath generation was started on this host (host/start)'];
    if (!alive(this.sup.keeperPid())) problems.push('hitless-keeper is not running');
    if (!this.sup.genAlive(d.active.gen)) problems.push(`active generation ${d.active.gen} is not running`);
    if (d.target && d.state !== 'preparing' && !this.sup.genAlive(d.target.gen)) problems.push(`target generation ${d.target.gen} is not running`);
    if (problems.length === 0) {
      const s = await this.status();
      for (const v of s.vms) if (!v.connected) problems.push(`${v.vm}: no frontend connected`);
    }
    return problems;
  }

  async status(): Promise<UpgradeStatus> {
    const d = this.d;
    let sessions: { vm: string; serving?: string | null | undefined; connected: boolean }[] = [];
    try {
      sessions = (await (await this.sup.keeper()).request(keeper.sessionList, {})).sessions;
    } catch {
      sessions = [];
    }
    return {
      host: this.cfg.host,
      state: d.state,
      active: d.active,
      target: d.target,
      approve: d.approve,
      vms: this.vms().map((v) => {
        const s = sessions.find((x) => x.vm === v.name);
        return { vm: v.name, serving: s?.serving ?? null, connected: s?.connected ?? false, moved: d.moved.has(v.name), measurement: d.moved.get(v.name) ?? null };
      }),
      last_outcome: d.lastOutcome,
      error: d.error,
      journal_seq: this.journal.seq,
    };
  }

  private need(states: UpgradeState[], what: string): Derived {
    const d = this.d;
    if (!states.includes(d.state)) throw new AgentFailure('invalid-state', `${what} needs state ${states.join(' or ')}; the host is ${d.state}`);
    return d;
  }

  private peerSocket(target: string): string {
    return `${this.root}/run/peer-${target}.sock`;
  }

  /** Start the target generation beside the active one and pre-load every session on it. */
  async prepare(version: string, approve: Approve): Promise<void> {
    const d = this.need(['idle'], 'upgrade/prepare');
    if (!d.active || !this.sup.genAlive(d.active.gen)) throw new AgentFailure('invalid-state', 'no active generation runs on this host (host/start first)');
    this.release(version);
    const gen = this.nextGen(version);
    this.journal.append({ type: 'prepare', gen, release: version, approve });
    this.emit(await this.status());
    const active = await this.sup.gen(d.active.gen);
    const k = await this.sup.keeper();
    const uplink = this.cfg.uplinks.length === 2 ? this.cfg.uplinks[(this.journal.entries().filter((e) => e.type === 'start' || e.type === 'committed').length) % 2] : this.cfg.uplinks[0];
    // the peer link carries traffic between VMs split across the two generations
    await active.request(dp.peerDetach, {}).catch(() => undefined);
    await active.request(dp.peerAttach, { socket: this.peerSocket(gen), server: true });
    const ctl = await this.sup.startGen(gen, version, { ...(uplink ? { uplink } : {}), peer: { socket: this.peerSocket(gen), server: false } });
    for (const v of this.vms()) await ctl.request(dp.vmAdd, { vm: v.name, mac: v.mac });
    const fdb = await active.request(dp.fdbExport, {});
    await ctl.request(dp.fdbImport, { entries: fdb.entries.filter((e) => e.kind === 'learned') });
    await k.request(keeper.genAttach, { gen, run_dir: this.sup.genDir(gen) });
    await k.request(keeper.failoverStandby, { gen });
    const { sessions } = await k.request(keeper.sessionList, {});
    for (const s of sessions) if (s.connected && s.movable) await k.request(keeper.sessionPreload, { vm: s.vm, gen });
    this.journal.append({ type: 'prepared' });
    this.emit(await this.status());
  }

  /** Move one VM to gen (the target, or back to the active one) and measure the break. */
  private async move(vm: string, to: GenRef, from: GenRef, budget: Budget | null): Promise<Measurement> {
    if (!this.vms().some((v) => v.name === vm)) throw new AgentFailure('unknown-vm', `no VM ${vm} on host ${this.cfg.host}`);
    const k = await this.sup.keeper();
    this.journal.append({ type: 'switch', vm, to: to.gen });
    const watch = await ProbeWatch.open(this.cfg.probe_ctl, vm);
    const dropsBefore = await this.drops(vm, [from.gen, to.gen]);
    let r;
    try {
      await k.request(keeper.sessionPreload, { vm, gen: to.gen }).catch(() => undefined);
      r = await k.request(keeper.handoffStart, { vm, gen: to.gen });
    } catch (e) {
      watch?.close();
      this.journal.append({ type: 'switch-failed', vm, to: to.gen, error: (e as Error).message });
      throw new AgentFailure('failed', `${vm}: ${(e as Error).message}`);
    }
    const m: Measurement = {
      vm,
      from: from.gen,
      to: to.gen,
      t_ns: r.timing.resumed_ns,
      window_us: r.timing.window_ns / 1000,
      passive_gap_us: await this.passiveGap(vm, from.gen, to.gen),
      dropped: Math.max(0, (await this.drops(vm, [from.gen, to.gen])) - dropsBefore),
      rings: r.rings,
      anomalies: r.anomalies,
      probe: watch ? await watch.result(r.timing.quiesce_ns, r.timing.resumed_ns) : null,
      within_budget: null,
    };
    if (budget) {
      const gap = Math.max(m.window_us / 1000, (m.passive_gap_us ?? 0) / 1000, m.probe?.gap_ms ?? 0);
      m.within_budget = gap <= budget.max_gap_ms && m.dropped <= budget.max_lost;
    }
    this.journal.append({ type: 'switched', vm, to: to.gen, measurement: m });
    this.emit(await this.status(), m);
    return m;
  }

  /** Every frame the generations dropped for the VM (any reason), summed. */
  private async drops(vm: string, gens: string[]): Promise<number> {
    let n = 0;
    for (const g of gens) {
      try {
        const d = (await (await this.sup.gen(g)).request(dp.statsShow, { vm })).vms[vm]?.drops;
        if (d) n += d.ring_full + d.no_dest + d.not_ready + d.stalled;
      } catch {
        /* a generation that is gone dropped nothing more */
      }
    }
    return n;
  }

  /** Last packet the old generation moved for the VM -> first packet the new one moved. */
  private async passiveGap(vm: string, from: string, to: string): Promise<number | null> {
    try {
      const a = (await (await this.sup.gen(from)).request(dp.statsShow, { vm })).vms[vm];
      let b = (await (await this.sup.gen(to)).request(dp.statsShow, { vm })).vms[vm];
      for (let i = 0; i < 10 && b && b.first_rx_ns === 0 && b.first_tx_ns === 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
        b = (await (await this.sup.gen(to)).request(dp.statsShow, { vm })).vms[vm];
      }
      if (!a || !b) return null;
      const last = Math.max(a.last_rx_ns, a.last_tx_ns);
      const firsts = [b.first_rx_ns, b.first_tx_ns].filter((x) => x > 0);
      if (last === 0 || firsts.length === 0) return null;
      return Math.max(0, Math.min(...firsts) - last) / 1000;
    } catch {
      return null;
    }
  }

  async switchVms(vms: string[]): Promise<Measurement[]> {
    const d = this.need(['switching'], 'upgrade/switch');
    const out: Measurement[] = [];
    for (const vm of vms) {
      if (d.moved.has(vm)) continue;
      out.push(await this.move(vm, d.target!, d.active!, null));
    }
    return out;
  }

  /** Auto mode: move every VM, one by one, stopping at the first one over budget. */
  async runAuto(): Promise<void> {
    const d = this.need(['switching'], 'upgrade/run');
    if (d.approve === 'each') throw new AgentFailure('invalid-state', 'the plan asks for an approval per VM (approve: each): use upgrade/switch');
    for (const v of this.vms()) {
      if (this.d.moved.has(v.name)) continue;
      const m = await this.move(v.name, d.target!, d.active!, d.approve.auto);
      if (m.within_budget === false) {
        this.journal.append({ type: 'switch-failed', vm: v.name, to: d.target!.gen, error: `over budget: gap ${(Math.max(m.window_us, m.passive_gap_us ?? 0) / 1000).toFixed(2)} ms > ${d.approve.auto.max_gap_ms} ms; stopped here` });
        this.emit(await this.status());
        return;
      }
    }
  }

  /** Move VMs back to the active generation; all of them (and retire the target) when none named. */
  async rollback(vms?: string[]): Promise<void> {
    const d = this.need(['switching', 'preparing', 'failed'], 'upgrade/rollback');
    if (vms) {
      for (const vm of vms) if (d.moved.has(vm)) await this.move(vm, d.active!, d.target!, null);
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
    if (d.target) {
      for (const vm of d.moved.keys()) await this.move(vm, d.active!, d.target, null);
      await k.request(keeper.genDetach, { gen: d.target.gen }).catch(() => undefined);
      await this.sup.stopGen(d.target.gen);
      if (d.active) await (await this.sup.gen(d.active.gen)).request(dp.peerDetach, {}).catch(() => undefined);
    }
    this.journal.append({ type: 'aborted', outcome });
    this.emit(await this.status());
  }

  /** All VMs are on the target: stop the old generation; the target becomes active. */
  async commit(): Promise<void> {
    const d = this.need(['switching'], 'upgrade/commit');
    const s = await this.status();
    const left = s.vms.filter((v) => v.connected && v.serving !== d.target!.gen).map((v) => v.vm);
    if (left.length > 0) throw new AgentFailure('invalid-state', `not every VM is on ${d.target!.gen} yet: ${left.join(', ')}`);
    this.journal.append({ type: 'commit' });
    await this.finishCommit(d);
  }

  private async finishCommit(d: Derived): Promise<void> {
    const k = await this.sup.keeper();
    await k.request(keeper.genDetach, { gen: d.active!.gen }).catch(() => undefined);
    await this.sup.stopGen(d.active!.gen);
    await (await this.sup.gen(d.target!.gen)).request(dp.peerDetach, {}).catch(() => undefined);
    this.journal.append({ type: 'committed' });
    this.emit(await this.status());
  }

  /**
   * After an agent restart: finish or undo what the journal shows under way, checking the
   * keeper for where each VM really is. Returns what was done, for the log.
   */
  async recover(): Promise<string | null> {
    const d = this.d;
    if (!d.pending) return null;
    const e = d.pending;
    const k = await this.sup.keeper();
    switch (e.type) {
      case 'prepare':
        // a half-prepared target is stopped; the host stays on its active generation
        this.journal.append({ type: 'abort', outcome: 'aborted' });
        await k.request(keeper.genDetach, { gen: e.gen }).catch(() => undefined);
        await this.sup.stopGen(e.gen);
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
      case 'commit':
        await this.finishCommit(d);
        return 'finished an interrupted commit';
      case 'abort':
        await this.retireTarget(e.outcome);
        return `finished an interrupted ${e.outcome === 'aborted' ? 'abort' : 'rollback'}`;
      default:
        return null;
    }
  }
}
