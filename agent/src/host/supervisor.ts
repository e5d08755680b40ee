// Supervising the host's native processes: the keeper and the datapath generations run
// detached (their own session, stdout/stderr to log files, pidfiles, control sockets), so they
// keep forwarding when the agent dies; a new agent re-attaches to them from their run dirs.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CtlClient } from '../native/ctlClient.js';
import { dpArgs, FANOUT_ATTEMPTS, fanoutClash } from '../native/launch.js';
import type { AgentConfig } from '../../../protocol/files.js';
import { stagePath } from './config.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const START_TIMEOUT_MS = 60_000;

export function alive(pid: number | null): boolean {
  if (pid === null) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid in a pidfile, or null (missing, unreadable, not a pid). */
export function readPid(path: string): number | null {
  try {
    const n = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(n) && n > 1 ? n : null;
  } catch {
    return null;
  }
}

export class Supervisor {
  private readonly ctls = new Map<string, CtlClient>();

  constructor(
    readonly root: string,
    private readonly cfg: AgentConfig,
  ) {}

  get keeperDir(): string {
    return join(this.root, 'run', 'keeper');
  }

  genDir(gen: string): string {
    return join(this.root, 'run', `gen-${gen}`);
  }

  keeperPid(): number | null {
    return readPid(join(this.keeperDir, 'keeper.pid'));
  }

  genPid(gen: string): number | null {
    return readPid(join(this.genDir(gen), 'dp.pid'));
  }

  genAlive(gen: string): boolean {
    return alive(this.genPid(gen));
  }

  /** Start a detached process logging to logPath and wait until its control socket answers. */
  private async launch(bin: string, args: string[], logPath: string, ctlPath: string, what: string): Promise<CtlClient> {
    const log = openSync(logPath, 'a');
    const child = spawn(bin, args, { detached: true, stdio: ['ignore', log, log] });
    closeSync(log);
    let exited: number | null = null;
    child.once('exit', (code) => (exited = code ?? -1));
    child.unref();
    // a DPDK start-up takes about a second here, and much longer on a loaded host (memory
    // initialised page by page, every driver plugin loaded): wait as long as that can take
    for (let i = 0; i < START_TIMEOUT_MS / 50; i++) {
      if (exited !== null) throw new Error(`${what} exited during start-up (code ${exited}); see ${logPath}`);
      if (existsSync(ctlPath)) {
        try {
          return await CtlClient.connect(ctlPath, 1000);
        } catch {
          /* not listening yet */
        }
      }
      await sleep(50);
    }
    child.kill('SIGKILL');
    throw new Error(`${what}: no control socket after ${START_TIMEOUT_MS / 1000} s; see ${logPath}`);
  }

  /** The keeper's control client, starting the keeper when none runs. */
  async keeper(): Promise<CtlClient> {
    const cached = this.ctls.get('keeper');
    if (cached && alive(this.keeperPid())) return cached;
    mkdirSync(this.keeperDir, { recursive: true });
    const ctlPath = join(this.keeperDir, 'ctl.sock');
    let ctl: CtlClient;
    if (alive(this.keeperPid())) ctl = await CtlClient.connect(ctlPath);
    else
      ctl = await this.launch(join(this.root, 'bin', 'hitless-keeper'), ['--run-dir', this.keeperDir], join(this.root, 'run', 'keeper.log'), ctlPath, 'hitless-keeper');
    this.ctls.set('keeper', ctl);
    return ctl;
  }

  /** Start generation gen of release (uplink and peer as given). */
  async startGen(gen: string, release: string, opts: { uplink?: string; peer?: { socket: string; server: boolean } }): Promise<CtlClient> {
    const dir = this.genDir(gen);
    mkdirSync(dir, { recursive: true });
    const args = dpArgs({
      genId: gen,
      runDir: dir,
      lcore: this.cfg.lcore,
      memMb: this.cfg.mem_mb,
      // unique per host root: several lab hosts (or labs) share one machine's /var/run/dpdk
      filePrefix: `hl-${createHash('sha1').update(this.root).digest('hex').slice(0, 8)}-${gen}`,
      ...(opts.uplink ? { uplink: opts.uplink } : {}),
      ...(opts.peer ? { peer: opts.peer } : {}),
      // its own release's stage, by path (a symlinked binary would otherwise find its build tree's)
      extraArgs: ['--fwd-lib', stagePath(this.root, release)],
    });
    const log = join(this.root, 'run', `gen-${gen}.log`);
    for (let attempt = 1; ; attempt++) {
      const logStart = existsSync(log) ? statSync(log).size : 0;
      try {
        const ctl = await this.launch(join(this.root, 'releases', release, 'bin', 'hitless-dp'), args, log, join(dir, 'ctl.sock'), `hitless-dp ${gen}`);
        this.ctls.set(gen, ctl);
        return ctl;
      } catch (e) {
        // see fanoutClash: a fresh process (another pid) joins another fanout group
        const out = existsSync(log) ? readFileSync(log, 'utf8').slice(logStart) : '';
        if (attempt >= FANOUT_ATTEMPTS || !fanoutClash(out)) throw e;
      }
    }
  }

  /** A running generation's control client (re-attaching after an agent restart). */
  async gen(gen: string): Promise<CtlClient> {
    const cached = this.ctls.get(gen);
    if (cached) return cached;
    if (!this.genAlive(gen)) throw new Error(`generation ${gen} is not running`);
    const ctl = await CtlClient.connect(join(this.genDir(gen), 'ctl.sock'));
    this.ctls.set(gen, ctl);
    return ctl;
  }

  /** SIGTERM (the generation drains and releases its VMs), SIGKILL after 10 s. */
  async stopGen(gen: string): Promise<void> {
    this.ctls.get(gen)?.close();
    this.ctls.delete(gen);
    const pid = this.genPid(gen);
    if (!alive(pid)) return;
    process.kill(pid!, 'SIGTERM');
    for (let i = 0; i < 200 && alive(pid); i++) await sleep(50);
    if (alive(pid)) process.kill(pid!, 'SIGKILL');
  }

  close(): void {
    for (const c of this.ctls.values()) c.close();
    this.ctls.clear();
  }
}
