// One host as the console sees it: its SSH session to the agent, and the row the fleet table
// shows. Connects under a fleet-wide concurrency limit, keeps the session alive (keepalive),
// reconnects with exponential backoff when it drops, and never retries on its own past a host
// key problem: a changed key blocks the host with the reason; an unknown key waits for the
// operator, who sees its fingerprint and decides. Agent events keep the row current; per-VM
// rates and measured switches are kept in short rings for the live charts.
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { z } from 'zod';
import { agent, events, type UpgradeStatus } from '../../../protocol/agent.js';
import type { HostEntry, HostRow, Mark, TrafficSample } from '../../../protocol/console.js';
import type { Measurement } from '../../../protocol/measure.js';
import type { Request } from '../../../protocol/rpc.js';
import { HostKeyError, openAgentSessionTo, openShellTo, type AgentSession, type HostShell, type SessionOptions } from './ssh/agentSession.js';
import { rememberHostKey } from './ssh/knownHosts.js';
import { resolveHost, type SshTarget } from './ssh/sshConfig.js';

/** At most n connection attempts at once, fleet-wide. */
export class Limiter {
  private running = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly n: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.n) await new Promise<void>((r) => this.queue.push(r));
    this.running++;
    try {
      return await fn();
    } finally {
      this.running--;
      this.queue.shift()?.();
    }
  }
}

export interface ConnOptions {
  sshConfig: string;
  knownHosts: string;
  limiter: Limiter;
  keepaliveMs: number;
  timeoutMs: number;
  /** the operator's passphrase for this host's identity file, from the secret store */
  passphrase(host: string): string | null;
  /** asked for an encrypted identity file's passphrase when none is known (the CLI's terminal) */
  askPassphrase?: (host: string, file: string) => Promise<string | null>;
}

export interface ConnEvents {
  changed(): void;
  traffic(host: string, samples: TrafficSample[]): void;
  measurement(host: string, m: Measurement, at: number): void;
}

const MAX_SAMPLES = 1200; // per VM: 20 min at 1/s
const MAX_MARKS = 200;
const BACKOFF_MAX_MS = 30_000;

export class HostConn {
  session: AgentSession | null = null;
  readonly row: HostRow;
  readonly samples = new Map<string, TrafficSample[]>();
  readonly marks: Mark[] = [];
  private backoffMs = 1000;
  private retry: NodeJS.Timeout | null = null;
  private retryAt: number | null = null;
  private refresher: NodeJS.Timeout | null = null;
  private pendingKey: { target: SshTarget; key: Buffer; fp: string } | null = null;
  private closed = false;
  private attempt: Promise<void> | null = null;
  private inflight = 0;
  /** drivers waiting for a pushed status (hostUpgrade.ts until) */
  private readonly waiters = new Set<{ check(st: UpgradeStatus): void; fail(e: Error): void }>();

  constructor(
    readonly entry: HostEntry,
    private readonly opts: ConnOptions,
    private readonly on: ConnEvents,
  ) {
    this.row = {
      name: entry.name,
      source: entry.source,
      address: 'alias' in entry.ssh ? entry.ssh.alias : `${entry.ssh.user}@${entry.ssh.host}:${entry.ssh.port}`,
      group: entry.group,
      conn: 'connecting',
      problem: null,
      pending_key: null,
      next_retry_ms: null,
      agent_version: null,
      supervisor: null,
      releases: [],
      active: null,
      target: null,
      state: null,
      mode: 'handoff',
      error: null,
      health: null,
      standby: null,
      keeper: null,
      exposed: null,
      failovers: [],
      vms: [],
      last_break_ms: null,
      campaign: null,
    };
  }

  target(): SshTarget {
    const s = this.entry.ssh;
    if ('alias' in s) {
      // a config named by the fleet entry (which the renderer can set) runs no Match exec
      const t = resolveHost(s.alias, s.config ?? this.opts.sshConfig, (s.config ?? this.opts.sshConfig) === this.opts.sshConfig);
      this.row.address = `${t.user}@${t.host}:${t.port}`;
      return t;
    }
    const ids = s.identity ? [s.identity] : ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((f) => join(homedir(), '.ssh', f));
    return { ...resolveHost(s.host, '/dev/null'), alias: this.entry.name, port: s.port, user: s.user, identityFiles: ids, knownHosts: [this.opts.knownHosts], strict: 'ask' };
  }

  /** Row as pushed: with the live retry countdown. */
  snapshot(): HostRow {
    return { ...this.row, next_retry_ms: this.retryAt === null ? null : Math.max(0, Math.round(this.retryAt - Date.now())) };
  }

  /** Connect now (first start, the operator's retry, after a host key decision). */
  connect(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.attempt) return this.attempt;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    this.retryAt = null;
    this.attempt = this.opts.limiter.run(() => this.open()).finally(() => (this.attempt = null));
    return this.attempt;
  }

  private set(p: Partial<HostRow>): void {
    Object.assign(this.row, p);
    this.on.changed();
  }

  private async open(): Promise<void> {
    if (this.session) return;
    this.set({ conn: 'connecting', problem: null });
    let target: SshTarget;
    try {
      target = this.target();
    } catch (e) {
      return this.set({ conn: 'unreachable', problem: (e as Error).message });
    }
    let s: AgentSession | null = null;
    try {
      s = await openAgentSessionTo(target, this.entry.agent_command, this.sessionOptions(true));
      this.session = s;
      this.subscribe(s);
      await this.refresh(true).catch(async (e: Error) => {
        throw new Error(await agentFailure(s!, this.entry, e));
      });
      // reset only once the agent answered: a host without one is retried ever less often
      this.backoffMs = 1000;
      this.set({ conn: 'connected', problem: null, pending_key: null });
      this.refresher = setInterval(() => void this.refresh(false).catch(() => undefined), 5000);
      const mine = s;
      void s.closed.then(() => this.dropped(mine));
    } catch (e) {
      s?.close();
      this.session = null;
      if (e instanceof HostKeyError && e.kind === 'unknown' && this.pendingKey) {
        return this.set({ conn: 'hostkey-unknown', problem: `unknown host key ${this.pendingKey.fp}: accept it only if it is this host's key` });
      }
      if (e instanceof HostKeyError) return this.set({ conn: 'hostkey-changed', problem: e.message, pending_key: null });
      this.set({ conn: 'unreachable', problem: (e as Error).message });
      this.scheduleRetry();
    }
  }

  private scheduleRetry(): void {
    if (this.closed) return;
    const wait = this.backoffMs;
    this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs * 2);
    this.retryAt = Date.now() + wait;
    this.retry = setTimeout(() => void this.connect(), wait);
  }

  /** SSH options of this host's connections: the agent's, and a plain one (installing the agent). */
  private sessionOptions(ask: boolean): SessionOptions {
    const pass = this.opts.passphrase(this.entry.name);
    return {
      sshConfig: 'alias' in this.entry.ssh ? (this.entry.ssh.config ?? this.opts.sshConfig) : this.opts.sshConfig,
      trustedConfig: !('alias' in this.entry.ssh) || (this.entry.ssh.config ?? this.opts.sshConfig) === this.opts.sshConfig,
      keepaliveMs: this.opts.keepaliveMs,
      timeoutMs: this.opts.timeoutMs,
      ...(pass ? { passphrase: pass } : {}),
      ...(this.opts.askPassphrase ? { askPassphrase: (file: string) => this.opts.askPassphrase!(this.entry.name, file) } : {}),
      // never hold a handshake open for a person: record the key and ask in the fleet table
      ...(ask
        ? {
            decideUnknown: async (t: SshTarget, type: string, fp: string, key: Buffer) => {
              this.pendingKey = { target: t, key, fp };
              this.row.pending_key = { type, fingerprint: fp };
              return false;
            },
          }
        : {}),
    };
  }

  /** A plain SSH connection to this host (no agent on it), host key checked as the agent's is;
   * an unknown key is refused here: the operator decides on it in the fleet table first. */
  async shell(): Promise<HostShell> {
    return this.opts.limiter.run(() => openShellTo(this.target(), this.sessionOptions(false)));
  }

  /** Close the agent's session and connect again (a new agent process: after installing one). */
  async reconnect(): Promise<void> {
    // an attempt under way (a retry) started the agent that was there before: let it end first
    if (this.attempt) await this.attempt;
    const s = this.session;
    if (s) {
      if (this.refresher) clearInterval(this.refresher);
      this.refresher = null;
      this.session = null;
      for (const w of [...this.waiters]) w.fail(new Error(`${this.entry.name}: its agent is being replaced; the host keeps its state (resume when it is back)`));
      s.close();
      await s.closed;
    }
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    this.backoffMs = 1000;
    await this.connect();
  }

  private dropped(s: AgentSession): void {
    if (this.session !== s) return; // replaced on purpose (reconnect)
    if (this.refresher) clearInterval(this.refresher);
    this.refresher = null;
    this.session = null;
    for (const w of [...this.waiters]) w.fail(new Error(`${this.entry.name}: the connection to its agent dropped; the host keeps its state (resume when it is back)`));
    if (this.closed) return;
    this.set({ conn: 'disconnected', problem: 'the SSH connection dropped; reconnecting' });
    this.scheduleRetry();
  }

  /** The operator's decision on an unknown host key; the fingerprint must be the one shown. */
  async decideKey(fp: string, accept: boolean): Promise<void> {
    const p = this.pendingKey;
    if (!p || this.row.conn !== 'hostkey-unknown') throw new Error(`hostkey/decide: name: ${this.entry.name} has no host key waiting for a decision`);
    if (p.fp !== fp) throw new Error(`hostkey/decide: fingerprint: the host presented ${p.fp}, not ${fp}`);
    this.pendingKey = null;
    if (!accept) return this.set({ conn: 'hostkey-unknown', pending_key: null, problem: `host key ${fp} rejected by the operator: not connecting` });
    rememberHostKey(p.target.knownHosts[0]!, p.target.host, p.target.port, p.key);
    this.set({ pending_key: null });
    await this.connect();
  }

  private subscribe(s: AgentSession): void {
    s.agent.on(events.state, (st) => this.applyStatus(st));
    s.agent.on(events.health, (h) => this.set({ health: { ok: h.ok, problems: h.problems } }));
    s.agent.on(events.measurement, (p) => this.addMark(p.measurement, Date.now(), true));
    s.agent.on(events.traffic, (p) => {
      const out: TrafficSample[] = p.vms.map((v) => ({ vm: v.vm, t: p.t_ms, rx_pps: v.rx_pps, tx_pps: v.tx_pps, dropped: v.dropped }));
      for (const x of out) {
        const ring = this.samples.get(x.vm) ?? [];
        ring.push(x);
        if (ring.length > MAX_SAMPLES) ring.splice(0, ring.length - MAX_SAMPLES);
        this.samples.set(x.vm, ring);
        const vm = this.row.vms.find((r) => r.vm === x.vm);
        if (vm) Object.assign(vm, { rx_pps: x.rx_pps, tx_pps: x.tx_pps });
      }
      this.on.traffic(this.entry.name, out);
      this.on.changed();
    });
  }

  private addMark(m: Measurement, at: number, live: boolean): void {
    if (this.marks.some((x) => x.measurement.vm === m.vm && x.measurement.t_ns === m.t_ns)) return;
    this.marks.push({ at, measurement: m });
    if (this.marks.length > MAX_MARKS) this.marks.splice(0, this.marks.length - MAX_MARKS);
    const vm = this.row.vms.find((r) => r.vm === m.vm);
    if (vm) vm.last = m;
    this.row.last_break_ms = m.break_ms;
    if (live) this.on.measurement(this.entry.name, m, at);
    this.on.changed();
  }

  /** The first status the agent pushes from now on for which pred holds (hostUpgrade.ts). */
  until(pred: (st: UpgradeStatus) => boolean, signal: AbortSignal): Promise<UpgradeStatus> {
    return new Promise((resolve, reject) => {
      const w = {
        check: (st: UpgradeStatus) => {
          if (!pred(st)) return;
          done();
          resolve(st);
        },
        fail: (e: Error) => {
          done();
          reject(e);
        },
      };
      const onAbort = () => w.fail(new Error(`${this.entry.name}: stopped waiting for its agent (${String(signal.reason ?? 'aborted')})`));
      const done = () => {
        this.waiters.delete(w);
        signal.removeEventListener('abort', onAbort);
      };
      if (signal.aborted) return onAbort();
      if (!this.session) return w.fail(new Error(`${this.entry.name} is not connected (${this.row.conn})`));
      signal.addEventListener('abort', onAbort);
      this.waiters.add(w);
    });
  }

  applyStatus(st: UpgradeStatus): void {
    for (const w of [...this.waiters]) w.check(st);
    // a swap keeps the generation: the VMs are on the target's release once the stage is swapped
    const rel = (g: string | null, moved: boolean) =>
      g === null ? null : st.mode === 'swap' && moved && st.target ? st.target.release : g === st.active?.gen ? st.active.release : g === st.target?.gen ? st.target.release : null;
    const prev = new Map(this.row.vms.map((v) => [v.vm, v]));
    this.set({
      state: st.state,
      mode: st.mode,
      active: st.active,
      target: st.target,
      error: st.error,
      standby: st.standby,
      exposed: st.exposed,
      failovers: st.failovers,
      vms: st.vms.map((v) => ({
        vm: v.vm,
        serving: v.serving,
        release: rel(v.serving, v.moved),
        connected: v.connected,
        moved: v.moved,
        last: v.measurement ?? prev.get(v.vm)?.last ?? null,
        rx_pps: prev.get(v.vm)?.rx_pps ?? null,
        tx_pps: prev.get(v.vm)?.tx_pps ?? null,
      })),
    });
  }

  /** Re-read the host: info and status always; the journal's switches on (re)connect. */
  async refresh(full: boolean): Promise<void> {
    const s = this.session;
    if (!s) return;
    const info = await s.agent.request(agent.hostInfo, {});
    this.row.agent_version = info.agent_version;
    this.row.supervisor = info.supervisor ? `${info.supervisor.mode} (${info.supervisor.why})` : null;
    this.row.releases = info.releases;
    this.applyStatus(await s.agent.request(agent.upgradeStatus, {}));
    if (full) {
      // (an agent from before keeper upgrades has no keeper/versions)
      this.row.keeper = await s.agent.request(agent.keeperVersions, {}).catch(() => null);
      const h = await s.agent.request(agent.upgradeHistory, { limit: 200 });
      // the journal's time stamps are the agent's wall clock
      for (const x of h.switches) if (x.measurement) this.addMark(x.measurement, Date.parse(x.t), false);
    }
  }

  /** A request to this host's agent; refuses clearly when the host is not connected. */
  async request<P extends z.ZodTypeAny, R extends z.ZodTypeAny>(req: Request<P, R>, params: z.input<P>): Promise<z.output<R>> {
    const s = this.session;
    if (!s) throw new Error(`${this.entry.name} is not connected (${this.row.conn}${this.row.problem ? `: ${this.row.problem}` : ''})`);
    this.inflight++;
    try {
      return await s.agent.request(req, params);
    } finally {
      this.inflight--;
    }
  }

  /** A step is under way through this connection: a request to the agent, or a driver waiting
   * for the status it pushes (the agent must not be replaced now). */
  get busy(): boolean {
    return this.inflight > 0 || this.waiters.size > 0;
  }

  close(): void {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.refresher) clearInterval(this.refresher);
    this.session?.close();
    this.session = null;
  }
}


/** Why a host's agent did not answer, in words an operator acts on: a command that is not there
 * (exit 127) is an agent not installed yet. */
async function agentFailure(s: AgentSession, entry: HostEntry, e: Error): Promise<string> {
  const end = await Promise.race([s.exited, new Promise<null>((r) => setTimeout(() => r(null), 2000))]);
  if (!end) return e.message;
  const said = end.stderr.split('\n').filter(Boolean).slice(-1)[0] ?? '';
  if (end.code === 127) return `the agent is not installed on ${entry.name} (${entry.agent_command}: not found${said ? `: ${said}` : ''}); Install agent puts it there`;
  return `the agent on ${entry.name} exited (code ${end.code ?? 'none'})${said ? `: ${said}` : ''}`;
}
