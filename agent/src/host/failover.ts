// When a generation of the host dies (DESIGN.md §2, failover). The keeper has already done what
// cannot wait: fenced the survivors' peer links, moved every session it could to the other
// generation, let go of the frontends of those it could not (their links go down: never a
// silent blackhole). The agent then records the death in the journal and restores what the host
// had: a replacement generation of the dead one's release, joined to the peer link of the one
// serving, with every session pre-loaded on it and designated the keeper's standby. Until it
// runs, the host is *exposed*: a further crash has nowhere to go.
// When the keeper itself dies the sessions go with it (DESIGN.md §14: nothing keeps the VMs'
// sockets open): every frontend sees its link go down. The generations keep running; the agent
// starts a keeper again, attaches them, adds every VM back on the generation serving it and
// names the standby. A frontend that is the vhost-user server (QEMU server=on, virtio_user
// server=1) is connected again by the keeper at once; a client frontend comes back when it
// reconnects itself (QEMU's reconnect=; DPDK's virtio_user client does not).
import { keeper, KeeperEvent } from '../../../protocol/native/keeper.js';
import type { AgentConfig } from '../../../protocol/files.js';
import type { UpgradeStatus } from '../../../protocol/agent.js';
import type { CtlClient, CtlEvent } from '../native/ctlClient.js';
import type { VmEntry } from '../../../protocol/files.js';
import type { Derived, GenRef } from './derive.js';
import type { Journal } from './journal.js';
import { alive, type Supervisor } from './supervisor.js';
import type { Datapath } from './datapath.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** how long a restore waits for frontends that were let go to connect again */
const RECONNECT_WAIT_MS = 15_000;

/** What of the host agent this needs. */
export interface FailoverHost {
  readonly cfg: AgentConfig;
  readonly sup: Supervisor;
  readonly journal: Journal;
  readonly d: Derived;
  vms(): VmEntry[];
  status(): Promise<UpgradeStatus>;
  notify(s: UpgradeStatus): void;
  serial<T>(fn: () => Promise<T>): Promise<T>;
  nextGen(release: string): string;
  startBeside(gen: string, release: string, beside: string | null, uplink: string | undefined): Promise<void>;
  datapath(release: string): Datapath;
  retire(gen: string, stays: string | null): Promise<void>;
}

type Moved = Extract<KeeperEvent, { event: 'failover/done' }>['data'];
type Death = Extract<KeeperEvent, { event: 'gen/dead' }>['data'];

/**
 * Watches the keeper's events (and, every few seconds, the generations' pids: a standby that
 * serves nothing dies without a gen/dead) and handles each death once, in the agent's order of
 * operations.
 */
export class FailoverWatch {
  private readonly moves: Moved[] = [];
  private timer: NodeJS.Timeout | null = null;
  private subscribed: CtlClient | null = null;
  private readonly suspects = new Set<string>();
  private checking = false;

  constructor(private readonly h: FailoverHost) {}

  async start(): Promise<void> {
    await this.h.serial(() => this.subscribe());
    this.timer = setInterval(() => void this.check().catch(() => undefined), 2000);
    this.timer.unref();
  }

  /** Follow the keeper's events once it runs (and again if it was restarted). */
  private async subscribe(): Promise<void> {
    if (!alive(this.h.sup.keeperPid())) return;
    const k = await this.h.sup.keeper();
    if (k === this.subscribed) return;
    this.subscribed = k;
    await k.subscribe((e) => this.onEvent(e));
    // the keeper gone (its connection ends with it): look at once, not at the next tick
    void k.ended.then(() => {
      if (this.timer) setTimeout(() => void this.check().catch(() => undefined), 20).unref();
    });
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private onEvent(raw: CtlEvent): void {
    const e = (raw.event === 'failover/done' || raw.event === 'gen/dead') ? parseEvent(raw) : null;
    if (e?.event === 'failover/done') this.moves.push(e.data);
    if (e?.event === 'gen/dead') {
      const at = BigInt(e.data.t_ns); // the keeper's monotonic clock, as process.hrtime's
      const moved = this.moves.filter((m) => m.from === e.data.gen).map((m) => ({ vm: m.vm, to: m.to }));
      this.moves.length = 0;
      void this.h.serial(() => handleDeath(this.h, e.data, moved, at)).catch((err: Error) => console.error(`hitless-agent: after ${e.data.gen} died: ${err.message}`));
    }
  }

  /** A generation the host counts on that is gone without the keeper saying so (found gone
   * twice, 2 s apart: the keeper's gen/dead for a generation that served VMs comes first). */
  async check(now = false): Promise<void> {
    // one check waits at a time (another agent may hold the host for minutes)
    if (this.checking) return;
    this.checking = true;
    await this.h.serial(async () => {
      const d = this.h.d;
      const lost = await keeperLost(this.h);
      if (lost) await restoreKeeper(this.h, lost);
      await this.subscribe();
      for (const g of [d.active, d.target]) {
        if (!g || this.h.sup.genAlive(g.gen) || d.failovers.some((f) => f.gen === g.gen)) {
          if (g) this.suspects.delete(g.gen);
          continue;
        }
        if (d.mode === 'swap' && g === d.target) continue; // a swap's target is the same process
        if (d.state === 'preparing' && g === d.target) continue; // still starting
        if (!now && !this.suspects.has(g.gen)) {
          this.suspects.add(g.gen);
          continue;
        }
        const t = process.hrtime.bigint();
        await handleDeath(this.h, { gen: g.gen, cause: 'its process is gone', moved: 0, failed: 0, fenced: 0, lost_inside: null, lost_in_link: null, t_ns: Number(t), done_ns: Number(t) }, [], t);
      }
    }).finally(() => (this.checking = false));
  }
}

/** Why the keeper no longer holds the host's sessions, or null when it does (or has nothing to
 * hold: no generation running). */
export async function keeperLost(h: FailoverHost): Promise<string | null> {
  const active = h.d.active;
  if (!active || !h.sup.genAlive(active.gen)) return null;
  if (!alive(h.sup.keeperPid())) return 'its process is gone';
  const k = await h.sup.keeper();
  const { gens } = await k.request(keeper.genList, {});
  if (!gens.some((g) => g.gen === active.gen)) return `it runs (pid ${h.sup.keeperPid()}) but knows no generation: it was restarted`;
  return restoreOpen(h) ? 'a restore of it did not finish' : null;
}

/** The journal's last word on the keeper is that it was lost (a restore failed part way). */
function restoreOpen(h: FailoverHost): boolean {
  const last = [...h.journal.entries()].reverse().find((e) => e.type === 'keeper-lost' || e.type === 'keeper-restored');
  return last?.type === 'keeper-lost';
}

/** The generation a keeper names its standby: of two running, the one last started beside the
 * other (a prepare's target, or a replacement restored after a death); none with one. */
function standbyOf(h: FailoverHost, running: GenRef[]): string | null {
  if (running.length < 2) return null;
  for (const e of [...h.journal.entries()].reverse()) {
    const gen = e.type === 'prepare' || e.type === 'restored' ? e.gen : null;
    if (gen && running.some((g) => g.gen === gen)) return gen;
  }
  return null;
}

/** A keeper again, holding what the dead one held (see the top of this file). */
export async function restoreKeeper(h: FailoverHost, cause: string): Promise<void> {
  const t0 = process.hrtime.bigint();
  const since = () => Number(process.hrtime.bigint() - t0) / 1e6;
  console.error(`hitless-agent: the keeper is lost (${cause}): starting it again`);
  // once per loss: a restore that failed part way is taken up again from where it stopped
  if (!restoreOpen(h)) h.journal.append({ type: 'keeper-lost', cause });
  h.notify(await h.status());
  const d = h.d;
  const k = await h.sup.keeper();
  const running = [d.active, d.target].filter((g): g is GenRef => g !== null && h.sup.genAlive(g.gen));
  const attached = new Set((await k.request(keeper.genList, {})).gens.map((g) => g.gen));
  for (const g of running) if (!attached.has(g.gen)) await h.datapath(g.release).attach(g.gen);
  const held = new Set((await k.request(keeper.sessionList, {})).sessions.map((s) => s.vm));
  for (const v of h.vms()) {
    if (held.has(v.name)) continue;
    const onTarget = d.target !== null && d.moved.has(v.name) && running.some((g) => g.gen === d.target!.gen);
    const gen = onTarget ? d.target!.gen : (running.find((g) => g.gen === d.active?.gen) ?? running[0])!.gen;
    await k.request(keeper.vmAdd, { vm: v.name, gen, mac: v.mac, ...(v.frontend_socket ? { socket: v.frontend_socket, client: true } : {}) }).catch((e: Error) => {
      if (!/exists/.test(e.message)) throw e;
    });
  }
  const standby = standbyOf(h, running);
  if (standby) await k.request(keeper.failoverStandby, { gen: standby });
  const took = since();
  // the frontends connect again (a server frontend: the keeper connects to it)
  let outage: number | null = null;
  let down: string[] = [];
  const deadline = Date.now() + RECONNECT_WAIT_MS;
  for (;;) {
    const { sessions } = await k.request(keeper.sessionList, {});
    down = h.vms().map((v) => v.name).filter((vm) => !sessions.find((s) => s.vm === vm)?.connected);
    if (down.length === 0) {
      outage = since();
      break;
    }
    if (Date.now() > deadline) break;
    await sleep(20);
  }
  // the standby ready to take each session at once again
  if (standby) {
    const { sessions } = await k.request(keeper.sessionList, {});
    for (const s of sessions) if (s.connected && s.movable && s.serving !== standby) await k.request(keeper.sessionPreload, { vm: s.vm, gen: standby }).catch(() => undefined);
  }
  h.journal.append({ type: 'keeper-restored', pid: h.sup.keeperPid(), took_ms: took, outage_ms: outage, down });
  console.error(`hitless-agent: keeper running again (pid ${h.sup.keeperPid()}) after ${took.toFixed(0)} ms; ${down.length ? `frontends not back: ${down.join(', ')}` : `every frontend back after ${outage!.toFixed(0)} ms`}`);
  h.notify(await h.status());
}

function parseEvent(raw: CtlEvent): KeeperEvent | null {
  const r = KeeperEvent.safeParse(raw);
  return r.success ? r.data : null;
}

/** Record a death once and, unless the host's config says not to, restore a standby. */
export async function handleDeath(h: FailoverHost, death: Death, moved: { vm: string; to: string }[], seenAt: bigint): Promise<void> {
  if (h.d.failovers.some((f) => f.gen === death.gen)) return;
  const k = await h.sup.keeper();
  const { sessions } = await k.request(keeper.sessionList, {});
  h.journal.append({
    type: 'gen-dead',
    gen: death.gen,
    cause: death.cause,
    sessions: sessions.map((s) => ({ vm: s.vm, serving: s.connected ? (s.serving ?? null) : null })),
    moved,
    // a VM it served that no generation took: the keeper closed its frontend's connection
    down: sessions.filter((s) => !s.connected && s.home === death.gen).map((s) => s.vm),
    lost_inside: death.lost_inside,
  });
  h.notify(await h.status());
  // the survivor delivers to every VM it now serves: nothing of a switch towards the dead one stays
  const d = h.d;
  for (const g of [d.active, d.target]) if (g && g.gen !== death.gen && h.sup.genAlive(g.gen)) await h.datapath(g.release).alone(g.gen).catch(() => undefined);
  if (h.cfg.restore_standby) await restore(h, death.gen, seenAt);
}

/** Start a replacement for dead (a generation the host counts on) and make it the standby. */
export async function restore(h: FailoverHost, dead: string, since: bigint): Promise<void> {
  const d = h.d;
  const role = d.active?.gen === dead ? 'active' : d.target?.gen === dead ? 'target' : null;
  if (!role) return;
  const release = d[role]!.release;
  const survivor = [d.active, d.target].find((g): g is GenRef => g !== null && g.gen !== dead && h.sup.genAlive(g.gen)) ?? null;
  const gen = h.nextGen(release);
  h.journal.append({ type: 'restore', gen, release, replaces: dead });
  h.notify(await h.status());
  try {
    const k = await h.sup.keeper();
    // what the dead one still holds goes first (an OVS generation's ovsdb-server, namespace,
    // hugepages and uplink: the replacement takes the uplink, and its end of the survivor's
    // peer link, parked at the survivor)
    await h.retire(dead, survivor?.gen ?? null);
    // two uplinks: the one the survivor does not use (the dead one's)
    const survivorUplink = survivor ? await h.datapath(survivor.release).uplink(survivor.gen) : null;
    const uplink = h.cfg.uplinks.find((u) => u !== survivorUplink) ?? h.cfg.uplinks[0];
    await h.startBeside(gen, release, survivor?.gen ?? null, uplink);
    const took = Number(process.hrtime.bigint() - since) / 1e6;
    // frontends that were let go connect again to the standby (the keeper admits them there)
    let outage: number | null = null;
    const wasDown = h.d.failovers[h.d.failovers.length - 1]?.down ?? [];
    if (wasDown.length > 0) {
      const deadline = Date.now() + RECONNECT_WAIT_MS;
      for (;;) {
        const { sessions } = await k.request(keeper.sessionList, {});
        if (wasDown.every((vm) => sessions.find((s) => s.vm === vm)?.connected)) {
          outage = Number(process.hrtime.bigint() - since) / 1e6;
          break;
        }
        if (Date.now() > deadline) break;
        await sleep(20);
      }
    }
    // the dead one is forgotten once no VM waits for it (a VM let go comes back to the standby)
    await k.request(keeper.genDetach, { gen: dead }).catch(() => undefined);
    // what the dead one held (an OVS generation's ovsdb-server, namespace and hugepages) goes
    const { sessions } = await k.request(keeper.sessionList, {});
    for (const s of sessions) if (s.connected && s.movable && s.serving !== gen) await k.request(keeper.sessionPreload, { vm: s.vm, gen }).catch(() => undefined);
    h.journal.append({ type: 'restored', gen, replaces: dead, took_ms: took, outage_ms: outage });
  } catch (e) {
    h.journal.append({ type: 'restore-failed', replaces: dead, error: (e as Error).message });
    h.notify(await h.status());
    throw e;
  }
  h.notify(await h.status());
}
