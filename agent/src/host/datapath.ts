// The one interface through which the agent drives a datapath generation of either kind
// (DESIGN §12): start it beside the running one (its VM ports, the running one's forwarding
// state carried over, attached to the keeper), read its per-VM counters, stop it. The state
// machine, journal, keeper handoff/failover and reports above it do not know which kind runs.
//   hitless-dp: hitless-dp listens for the keeper at <run dir>/vhost/<vm>.sock; a memif peer
//     link joins two generations; the learned FDB is carried over.
//   ovs-dpdk: stock ovs-vswitchd with its own ovsdb-server, namespace and hugepages
//     (native/ovs.ts); its dpdkvhostuserclient ports connect to the keeper's socket for the VM
//     and generation; a veth pair between the two generations' namespaces is the peer link;
//     the OpenFlow state (groups, then flows in one bundle) is carried over, with
//     flow-restore-wait set until it is in.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentConfig, DatapathKind, VmEntry } from '../../../protocol/files.js';
import { dp } from '../../../protocol/native/dp.js';
import { keeper } from '../../../protocol/native/keeper.js';
import { CtlError } from '../native/ctlClient.js';
import { heldSwitch, Ovs, PACE_SOCKET, PEER_OFPORT, UPLINK_OFPORT } from '../native/ovs.js';
import { readManifest } from './config.js';
import type { Supervisor } from './supervisor.js';

/** A generation's counters for one VM: frames from it (rx) and to it (tx), every drop, and
 * when the kind records them, when it first and last moved a frame (ns, 0: never). */
export interface VmCounters {
  rx: number;
  tx: number;
  drops: number;
  first_ns: number | null;
  last_ns: number | null;
}

export interface GenStart {
  gen: string;
  release: string;
  uplink?: string | undefined;
  /** the generation running beside it (its state is carried over), or none */
  beside: string | null;
  vms: VmEntry[];
}

export interface Datapath {
  readonly kind: DatapathKind;
  /** The generation up, serving every VM port, the state of `beside` carried over, attached to
   * the keeper. It takes no VM until the keeper hands it one. */
  start(s: GenStart): Promise<void>;
  /** Running gen attached to the keeper: at the end of start, and again to a keeper started
   * after one died (which knows no generation). */
  attach(gen: string): Promise<void>;
  /** Per-VM counters; throws when the generation does not answer. */
  counters(gen: string, vm?: string): Promise<Map<string, VmCounters>>;
  /** The uplink the generation uses, if any. */
  uplink(gen: string): Promise<string | null>;
  /** Stop gen (serving no VM any more, or dead); `stays` drops its link to it first. */
  stop(gen: string, stays: string | null): Promise<void>;
  /** A VM's switch from one generation to another: the keeper's handoff, and what the kind
   * does around it so that the VM's frames are neither lost nor sent twice. */
  switchVm<T>(vm: VmEntry, from: string, to: string, steps: SwitchSteps<T>): Promise<T>;
  /** gen serves its VMs alone from now on (the other generation is gone or going): whatever a
   * switch left in it for the other is undone. */
  alone(gen: string): Promise<void>;
  /** What is wrong with a running gen beyond its own process (health): a part a switch needs. */
  problems(gen: string): string[];
}

/** The keeper's part of a switch: ready (the VM pre-loaded on the target, and any wait the
 * target needs before a handoff over), then the handoff. The kind runs ready before anything
 * that starts the VM's break. */
export interface SwitchSteps<T> {
  ready: () => Promise<void>;
  handoff: () => Promise<T>;
}

/** Unique per host root (several lab hosts share one machine's /var/run/dpdk and netns names). */
export function hostTag(root: string): string {
  return createHash('sha1').update(root).digest('hex').slice(0, 8);
}

/** The kind of a release (its manifest's; a release without one is hitless-dp's). */
export function kindOf(root: string, release: string): DatapathKind {
  return readManifest(root, release).manifest?.kind ?? 'hitless-dp';
}

class HitlessDpGens implements Datapath {
  readonly kind = 'hitless-dp' as const;
  constructor(
    private readonly root: string,
    private readonly sup: Supervisor,
  ) {}

  private peerSocket(gen: string): string {
    return `${this.root}/run/peer-${gen}.sock`;
  }

  async start(s: GenStart): Promise<void> {
    await this.sup.keeper(); // running before the generation it will attach to
    const other = s.beside ? await this.sup.gen(s.beside) : null;
    if (other) {
      // the peer link carries traffic between VMs split across the two generations
      await other.request(dp.peerDetach, {}).catch(() => undefined);
      await other.request(dp.peerAttach, { socket: this.peerSocket(s.gen), server: true });
    }
    const ctl = await this.sup.startGen(s.gen, s.release, { ...(s.uplink ? { uplink: s.uplink } : {}), ...(other ? { peer: { socket: this.peerSocket(s.gen), server: false } } : {}) });
    for (const v of s.vms) await ctl.request(dp.vmAdd, { vm: v.name, mac: v.mac });
    if (other) {
      const learned = (await other.request(dp.fdbExport, {})).entries.filter((e) => e.kind === 'learned');
      // a release from before stage layouts does not know an entry's age: give it the entries without
      await ctl.request(dp.fdbImport, { entries: learned }).catch((e: unknown) => {
        if (!(e instanceof CtlError && /age_s/.test(e.message))) throw e;
        return ctl.request(dp.fdbImport, { entries: learned.map(({ mac, kind, port }) => ({ mac, kind, port })) });
      });
    }
    await this.attach(s.gen);
  }

  async attach(gen: string): Promise<void> {
    await (await this.sup.keeper()).request(keeper.genAttach, { gen, run_dir: this.sup.genDir(gen) });
  }

  async counters(gen: string, vm?: string): Promise<Map<string, VmCounters>> {
    const out = new Map<string, VmCounters>();
    const st = await (await this.sup.gen(gen)).request(dp.statsShow, vm ? { vm } : {});
    for (const [name, v] of Object.entries(st.vms)) {
        const d = v.drops;
        const firsts = [v.first_rx_ns, v.first_tx_ns].filter((x) => x > 0);
        out.set(name, {
          rx: v.rx_pkts,
          tx: v.tx_pkts,
          drops: d.ring_full + d.no_dest + d.not_ready + d.stalled,
          first_ns: firsts.length > 0 ? Math.min(...firsts) : 0,
          last_ns: Math.max(v.last_rx_ns, v.last_tx_ns),
        });
    }
    return out;
  }

  async uplink(gen: string): Promise<string | null> {
    return (await (await this.sup.gen(gen)).request(dp.statsShow, {})).uplink?.spec ?? null;
  }

  /**
   * The one that stays drops its end of the peer link first: its packet loop stops using the
   * link before the link goes (a memif peer that disappears under a loop still polling it
   * unmaps the rings that loop reads).
   */
  async stop(gen: string, stays: string | null): Promise<void> {
    if (stays && this.sup.genAlive(stays)) await (await this.sup.gen(stays)).request(dp.peerDetach, {}).catch(() => undefined);
    await this.sup.stopGen(gen);
  }

  /** hitless-dp polls a VM's rings as soon as they are enabled, and its peer link carries the
   * VM's frames from the old generation (dp.c): the keeper's handoff is all there is. */
  async switchVm<T>(_vm: VmEntry, _from: string, _to: string, steps: SwitchSteps<T>): Promise<T> {
    await steps.ready();
    return steps.handoff();
  }

  async alone(): Promise<void> {}

  problems(): string[] {
    return [];
  }
}

class OvsDpdkGens implements Datapath {
  readonly kind = 'ovs-dpdk' as const;
  constructor(
    private readonly root: string,
    private readonly cfg: AgentConfig,
    private readonly sup: Supervisor,
    /** the host's VMs, as listed and as found (discover.ts) */
    private readonly vms: () => VmEntry[],
  ) {}

  /** A new generation's OVS (started by start()). */
  private fresh(gen: string, release: string): Ovs {
    const tag = hostTag(this.root);
    return new Ovs(this.sup.genDir(gen), {
      pmdCore: this.cfg.lcore,
      mainCore: null,
      memMb: Math.min(this.cfg.mem_mb, 512),
      filePrefix: `hl-${tag}-${gen}`,
      // an idle generation (a standby) sleeps: ~0 CPU until frames arrive
      pmdMaxSleepUs: 1000,
      netns: `hlo-${tag}-${gen}`,
      persistent: true,
      vswitchd: join(this.root, 'releases', release, 'bin', 'ovs-vswitchd'),
      hold: join(this.root, 'bin', 'hitless-hold'),
    });
  }

  /** A started generation's OVS, as it was started. */
  private ovs(gen: string): Ovs {
    return Ovs.at(this.sup.genDir(gen));
  }

  /** A VM's OpenFlow port in a first generation: its place in the host's VM list. A later
   * generation copies the running one's port, number included, so that the carried flows and
   * groups mean the same VMs. */
  private static ofport(vms: VmEntry[], vm: string): number {
    return vms.findIndex((v) => v.name === vm) + 1;
  }

  /** the keeper listens at the generation's vhost sockets; its dpdkvhostuserclient ports (and
   * the pace port) connect to them, and again by themselves after a keeper restart */
  async attach(gen: string): Promise<void> {
    await (await this.sup.keeper()).request(keeper.genAttach, { gen, run_dir: this.sup.genDir(gen), backend: 'listen' });
  }

  async start(s: GenStart): Promise<void> {
    const o = this.fresh(s.gen, s.release);
    try {
      await o.start({ flowRestoreWait: s.beside !== null });
      await this.attach(s.gen);
      // the keeper's pace port: its vhost event thread kept awake through each switch
      await o.addPace(join(this.sup.genDir(s.gen), 'vhost', PACE_SOCKET));
      // each VM's port like the running generation's (its number, the cloud's ids and settings)
      const running = new Map(s.beside ? (await this.ovs(s.beside).vhostPorts()).map((p) => [p.name, p]) : []);
      for (const v of s.vms) {
        const sock = join(this.sup.genDir(s.gen), 'vhost', `${v.name}.sock`);
        const like = running.get(v.name);
        if (like) await o.addVhostLike(like, sock);
        else await o.addVhostClient(v.name, sock, OvsDpdkGens.ofport(s.vms, v.name));
      }
      // its hold port, for the VMs it takes (switchVm)
      await o.addHold(OvsDpdkGens.linkName(this.root, `hold:${s.gen}`));
      // its own uplink (lab: a veth end into the fabric; production: a VF), in its namespace
      if (s.uplink) await o.addUplink(s.uplink);
      if (s.beside) {
        const other = this.ovs(s.beside);
        // the running generation's parked end of its peer link becomes ours: its ports stay as
        // they are (an older generation without one gets a new link, at a PMD reload's cost)
        if (!(await o.adoptPeer(other))) await this.link(other, o, s.gen);
        await o.importState(await other.exportState());
        await o.flowsRestored();
      } else {
        await o.peerPair(OvsDpdkGens.linkName(this.root, s.gen));
        await o.splitL2(s.vms.map((v) => ({ port: OvsDpdkGens.ofport(s.vms, v.name), mac: v.mac })), PEER_OFPORT, s.uplink ? UPLINK_OFPORT : null);
      }
    } catch (e) {
      await (await this.sup.keeper()).request(keeper.genDetach, { gen: s.gen }).catch(() => undefined);
      o.stopSync(undefined, s.beside ? this.ovs(s.beside) : null);
      throw e;
    }
  }

  /** A veth pair's name (its ends <name>a, <name>b): unique per host root and generation,
   * within the 15 characters of an interface name. */
  private static linkName(root: string, gen: string): string {
    return `hp${createHash('sha1').update(`${root}:${gen}`).digest('hex').slice(0, 10)}`;
  }

  /** A new peer link for a running generation that has no end parked (one started before
   * parking existed): its old port replaced by a fresh pair (at a PMD reload's cost), and the
   * pair's other end taken by the new generation. */
  private async link(a: Ovs, b: Ovs, gen: string): Promise<void> {
    await a.delPeer();
    await a.peerPair(OvsDpdkGens.linkName(this.root, gen));
    if (!(await b.adoptPeer(a))) throw new Error(`no peer-link end parked in ${a.dir}`);
  }

  async counters(gen: string, vm?: string): Promise<Map<string, VmCounters>> {
    const out = new Map<string, VmCounters>();
    if (!this.sup.genAlive(gen)) throw new Error(`generation ${gen} is not running`);
    // OVS counts at its port: what it received came from the VM
    const stats = await this.ovs(gen).portsStats(this.vms().filter((x) => !vm || x.name === vm).map((x) => x.name));
    for (const [name, p] of stats) out.set(name, { rx: p.rx, tx: p.tx, drops: p.drops, first_ns: null, last_ns: null });
    return out;
  }

  async uplink(gen: string): Promise<string | null> {
    return this.ovs(gen).uplink();
  }

  /** A VM's switch between two OVS generations: its frames held at the target through the
   * keeper's handoff (heldSwitch); to a target that has no hold port (one started before them)
   * or whose hitless-hold is not running, the VM is switched by the handoff alone, and what is
   * sent to a stopped port is lost. */
  async switchVm<T>(vm: VmEntry, from: string, to: string, steps: SwitchSteps<T>): Promise<T> {
    const [x, y] = [this.ovs(from), this.ovs(to)];
    // only the target holds (the source steers to it over the peer link)
    if (this.sup.genAlive(from) && this.sup.genAlive(to) && y.hasHold()) return heldSwitch(x, y, vm, steps);
    for (const p of this.problems(to)) process.stderr.write(`hitless-agent: ${vm.name} switches anyway: ${p}\n`);
    await y.busyPoll(true);
    try {
      await steps.ready();
      return await steps.handoff();
    } finally {
      await y.busyPoll(false).catch(() => undefined);
    }
  }

  async alone(gen: string): Promise<void> {
    if (this.sup.genAlive(gen) && existsSync(join(this.sup.genDir(gen), 'ovs.json'))) await this.ovs(gen).unsteer();
  }

  problems(gen: string): string[] {
    // (a generation started before hold ports existed has no hold socket: nothing missing)
    if (!existsSync(join(this.sup.genDir(gen), 'hold.sock')) || this.ovs(gen).hasHold()) return [];
    return [`generation ${gen}: its hitless-hold is not running: a VM moved to it would switch without its frames held, and what is sent to the VM meanwhile would be lost`];
  }

  async stop(gen: string, stays: string | null): Promise<void> {
    // its end of the peer link goes back to the one that stays, parked for the next generation:
    // the ports of the one that stays do not change
    const other = stays && existsSync(join(this.sup.genDir(stays), 'ovs.json')) ? this.ovs(stays) : null;
    if (stays) await this.alone(stays).catch(() => undefined);
    // one whose start failed early has no ovs.json (and was cleaned up by start)
    if (existsSync(join(this.sup.genDir(gen), 'ovs.json'))) this.ovs(gen).stopSync(undefined, other);
    else await this.sup.stopGen(gen);
  }
}

/** The datapath that runs a release's generations. */
export function datapathOf(root: string, cfg: AgentConfig, sup: Supervisor, kind: DatapathKind, vms: () => VmEntry[]): Datapath {
  return kind === 'ovs-dpdk' ? new OvsDpdkGens(root, cfg, sup, vms) : new HitlessDpGens(root, sup);
}
