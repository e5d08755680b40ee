// Starting and stopping native processes for tests and benchmarks: datapath generations
// (hitless-dp, with the agent's own command line), keepers and probe VMs (hitless-probe), each
// a child of this process with its control client and stderr.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { CtlClient } from '../agent/src/native/ctlClient.js';
import { dpArgs, eal, FANOUT_ATTEMPTS, fanoutClash, type DpOptions } from '../agent/src/native/launch.js';
import { dp } from '../protocol/native/dp.js';
import { keeper, KeeperEvent } from '../protocol/native/keeper.js';
import { ProbeEvent, ProbeSummary } from '../protocol/native/probe.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Where the native binaries are: $HITLESS_BIN_DIR (installed) or the meson build tree. */
export function nativeBin(name: 'hitless-dp' | 'hitless-probe' | 'hitless-keeper' | 'hitless-keeper-format-next' | 'hitless-hold' | 'hitless-fwd-l2.so'): string {
  const dir = process.env.HITLESS_BIN_DIR;
  // (the keeper of another state format is built for the tests only: never installed)
  if (dir && name !== 'hitless-keeper-format-next') return join(dir, name);
  const sub = { 'hitless-fwd-l2.so': 'fwd', 'hitless-dp': 'dp', 'hitless-probe': 'probe', 'hitless-keeper': 'keeper', 'hitless-keeper-format-next': 'keeper', 'hitless-hold': 'hold' }[name];
  return join(repoRoot, 'native/build/src', sub, name);
}

/** Resolves with the first stdout line that parses as JSON and satisfies pred. */
function waitLine<T>(child: ChildProcess, what: string, timeoutMs: number, pred: (o: unknown) => T | undefined): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const rl = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => {
      rl.close();
      reject(new Error(`${what}: not ready after ${timeoutMs} ms`));
    }, timeoutMs);
    const onExit = (code: number | null, sig: string | null) => {
      clearTimeout(timer);
      reject(new Error(`${what}: exited during start-up (code ${code}, signal ${sig})`));
    };
    child.once('exit', onExit);
    rl.on('line', (line) => {
      let o: unknown;
      try {
        o = JSON.parse(line);
      } catch {
        return;
      }
      const v = pred(o);
      if (v !== undefined) {
        clearTimeout(timer);
        child.off('exit', onExit);
        rl.close();
        resolvePromise(v);
      }
    });
  });
}

/** A daemon that prints {"event":"ready"} on stdout once it serves, with its control socket. */
interface Daemon {
  child: ChildProcess;
  ctl: CtlClient;
  log: { stderr: string };
}

async function startDaemon(bin: string, args: string[], what: string, ctlPath: string): Promise<Daemon> {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = { stderr: '' };
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (log.stderr += d));
  try {
    await waitLine(child, what, 60000, (o) => (z.object({ event: z.literal('ready') }).safeParse(o).success ? true : undefined));
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${(e as Error).message}\n${log.stderr}`);
  }
  return { child, ctl: await CtlClient.connect(ctlPath), log };
}

/** SIGTERM, SIGKILL after timeoutMs, and the exit status. */
async function terminate(child: ChildProcess, timeoutMs = 10000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return exited(child);
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const r = await exited(child);
  clearTimeout(t);
  return r;
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
}

/** A native daemon this process started: its child, control client and stderr. */
abstract class DaemonProcess {
  protected constructor(protected readonly d: Daemon) {}

  get child(): ChildProcess {
    return this.d.child;
  }

  get ctl(): CtlClient {
    return this.d.ctl;
  }

  get stderr(): string {
    return this.d.log.stderr;
  }

  /** SIGTERM and wait (SIGKILL after 10 s). */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.ctl.close();
    return terminate(this.child);
  }
}

export class DpProcess extends DaemonProcess {
  private constructor(
    d: Daemon,
    readonly opts: DpOptions,
  ) {
    super(d);
  }

  static async start(opts: DpOptions): Promise<DpProcess> {
    mkdirSync(opts.runDir, { recursive: true });
    const args = dpArgs(opts);
    for (let attempt = 1; ; attempt++) {
      try {
        const d = await startDaemon(opts.bin ?? nativeBin('hitless-dp'), args, `hitless-dp ${opts.genId}`, join(opts.runDir, 'ctl.sock'));
        return new DpProcess(d, opts);
      } catch (e) {
        if (attempt >= FANOUT_ATTEMPTS || !fanoutClash(String(e))) throw e;
      }
    }
  }

  get pid(): number {
    return this.child.pid!;
  }

  vhostSocket(vm: string): string {
    return join(this.opts.runDir, 'vhost', `${vm}.sock`);
  }


  async addVm(vm: string, mac: string): Promise<string> {
    return (await this.ctl.request(dp.vmAdd, { vm, mac })).socket;
  }

  /** Serve these VMs (server-mode sockets); returns them as probe VMs attached to this generation. */
  async serve(vms: { name: string; mac: string }[]): Promise<ProbeVm[]> {
    const out: ProbeVm[] = [];
    for (const v of vms) out.push({ ...v, socket: await this.addVm(v.name, v.mac) });
    return out;
  }
}

export interface KeeperOptions {
  runDir: string;
  extraArgs?: string[];
}

/** The host's keeper: owns the VMs' vhost-user sockets; its events are collected. */
export class KeeperProcess extends DaemonProcess {
  readonly events: KeeperEvent[] = [];
  private constructor(
    d: Daemon,
    readonly opts: KeeperOptions,
  ) {
    super(d);
  }

  static async start(opts: KeeperOptions): Promise<KeeperProcess> {
    mkdirSync(opts.runDir, { recursive: true });
    const d = await startDaemon(nativeBin('hitless-keeper'), ['--run-dir', opts.runDir, ...(opts.extraArgs ?? [])], 'hitless-keeper', join(opts.runDir, 'ctl.sock'));
    const k = new KeeperProcess(d, opts);
    await k.ctl.subscribe((e) => {
      const ev = KeeperEvent.safeParse(e);
      if (ev.success) k.events.push(ev.data);
    });
    return k;
  }

  vhostSocket(vm: string): string {
    return join(this.opts.runDir, 'vhost', `${vm}.sock`);
  }

  /** The keeper's pid: the one started, or the one a keeper/upgrade handed over to. */
  pid(): number {
    return this.successor ?? this.child.pid!;
  }

  private successor: number | null = null;

  private async follow(): Promise<void> {
    this.d.ctl = await CtlClient.connect(join(this.opts.runDir, 'ctl.sock'));
    await this.d.ctl.subscribe((e) => {
      const ev = KeeperEvent.safeParse(e);
      if (ev.success) this.events.push(ev.data);
    });
  }

  /** keeper/upgrade to bin; then this object follows the new keeper (its control socket, its
   * events). The old one's exit is awaited. */
  async upgrade(bin: string): Promise<z.infer<typeof keeper.keeperUpgrade.result>> {
    const old = this.pid();
    const r = await this.ctl.request(keeper.keeperUpgrade, { binary: bin });
    this.ctl.close();
    for (const t = Date.now(); existsSync(`/proc/${old}/status`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${old}/status`, 'utf8')); await new Promise((res) => setTimeout(res, 5)))
      if (Date.now() - t > 5000) throw new Error(`keeper ${old} still runs 5 s after it handed over to ${r.pid}`);
    this.successor = r.pid;
    await this.follow();
    return r;
  }

  override async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.successor === null) return super.stop();
    this.ctl.close();
    const pid = this.successor;
    const gone = () => !existsSync(`/proc/${pid}`);
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return { code: null, signal: null };
    }
    for (const t = Date.now(); !gone(); await new Promise((res) => setTimeout(res, 20)))
      if (Date.now() - t > 10000) {
        process.kill(pid, 'SIGKILL');
        break;
      }
    return { code: null, signal: 'SIGTERM' };
  }

  async attach(gen: DpProcess): Promise<void> {
    await this.ctl.request(keeper.genAttach, { gen: gen.opts.genId, run_dir: gen.opts.runDir });
  }

  /** Give these VMs keeper sockets served by gen (which must serve them too); returns probe VMs. */
  async serve(gen: DpProcess, vms: { name: string; mac: string }[]): Promise<ProbeVm[]> {
    await gen.serve(vms);
    const out: ProbeVm[] = [];
    for (const v of vms) out.push({ ...v, socket: (await this.ctl.request(keeper.vmAdd, { vm: v.name, gen: gen.opts.genId })).socket });
    return out;
  }

}

export interface ProbeVm {
  name: string;
  mac: string;
  socket: string;
  server?: boolean;
  packed?: boolean;
  /** queue pairs of its port */
  queues?: number;
}
export interface ProbeFlow {
  src: string;
  /** a VM of this probe, or a MAC */
  dst: string;
  pps: number;
  /** dst is a guest MAC that sends the flow back: measured on its return to src */
  reflect?: boolean;
}
export interface ProbeOptions {
  name: string;
  vms: ProbeVm[];
  flows: ProbeFlow[];
  durationS?: number;
  gapUs?: number;
  lcore?: number;
  memMb?: number;
  ctlPath?: string;
  extraArgs?: string[];
  /** EAL --file-prefix (default hl-probe-<name>) */
  filePrefix?: string;
}

export class ProbeProcess {
  readonly events: ProbeEvent[] = [];
  stderr = '';
  /** Its control socket, when started with ctlPath. */
  ctl: CtlClient | null = null;
  readonly summary: Promise<ProbeSummary>;

  private constructor(readonly child: ChildProcess, readonly opts: ProbeOptions) {
    let last = '';
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      if (line.trim() === '') return;
      last = line;
      try {
        const ev = ProbeEvent.safeParse(JSON.parse(line));
        if (ev.success) this.events.push(ev.data);
      } catch {
        /* not JSON: ignore */
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.summary = new Promise((res, rej) => {
      child.once('exit', (code, sig) => {
        rl.close();
        if (code !== 0) return rej(new Error(`hitless-probe ${opts.name} exited with ${code ?? sig}: ${this.stderr.slice(-2000)}`));
        let parsed: unknown;
        try {
          parsed = JSON.parse(last);
        } catch {
          parsed = undefined;
        }
        const sum = ProbeSummary.safeParse(parsed);
        if (sum.success) res(sum.data);
        else rej(new Error(`hitless-probe ${opts.name} ended without a summary (last line: ${last.slice(0, 200)}): ${this.stderr.slice(-2000)}`));
      });
    });
    this.summary.catch(() => undefined); // observed by whoever awaits it
  }

  /** Starts the probe and resolves once every VM link is up and flows are running. */
  static async start(opts: ProbeOptions): Promise<ProbeProcess> {
    const args = [...eal(opts.lcore ?? 0, opts.memMb ?? 128, opts.filePrefix ?? `hl-probe-${opts.name}`), '--'];
    for (const v of opts.vms) args.push('--vm', `${v.name},${v.mac},${v.socket}${v.server ? ',server' : ''}${v.packed ? ',packed' : ''}${v.queues ? `,queues=${v.queues}` : ''}`);
    for (const f of opts.flows) args.push(f.reflect ? '--reflect' : '--flow', `${f.src}:${f.dst}:${f.pps}`);
    if (opts.durationS !== undefined) args.push('--duration', String(opts.durationS));
    if (opts.gapUs !== undefined) args.push('--gap-us', String(opts.gapUs));
    if (opts.ctlPath) {
      mkdirSync(dirname(opts.ctlPath), { recursive: true });
      args.push('--ctl', opts.ctlPath);
    }
    args.push('--events', '-', ...(opts.extraArgs ?? []));
    const child = spawn(nativeBin('hitless-probe'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const p = new ProbeProcess(child, opts);
    // a probe with much memory takes longer to start (DPDK maps it page by page; --touch-memory writes it)
    const deadline = Date.now() + 20000 + 5 * (opts.memMb ?? 0);
    while (!p.events.some((e) => e.event === 'start')) {
      if (child.exitCode !== null || child.signalCode !== null) {
        await p.summary.catch((e: Error) => {
          throw e;
        });
        throw new Error(`hitless-probe ${opts.name} exited before starting: ${p.stderr}`);
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`hitless-probe ${opts.name}: links not up after 20 s: ${p.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (opts.ctlPath) p.ctl = await CtlClient.connect(opts.ctlPath);
    return p;
  }

  /** Stop sending, let it drain, and return its summary. */
  async stop(): Promise<ProbeSummary> {
    this.ctl?.close();
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.summary;
  }

  kill(): void {
    this.ctl?.close();
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

