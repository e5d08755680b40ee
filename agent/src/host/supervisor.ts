// Supervising the host's native processes: the keeper and the datapath generations outlive the
// agent (every agent is one SSH session's), so they keep forwarding when it ends; a new agent
// re-attaches to them from their run dirs (pidfiles the processes write, control sockets).
// Where systemd is PID 1 and the host package's units are installed, they run as its units
// (hitless-keeper.service, hitless-gen@<gen>.service: journald logs, the keeper restarted on a
// crash, nothing tied to the SSH session's cgroup); elsewhere (containers, these lab machines)
// as detached processes (their own session, stdout/stderr to log files). The agent says which.
// OVS-DPDK generations (ovs.ts) run detached either way.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CtlClient } from '../native/ctlClient.js';
import { dpArgs, FANOUT_ATTEMPTS, fanoutClash } from '../native/launch.js';
import type { AgentConfig } from '../../../protocol/files.js';
import { shellWord } from '../../../protocol/shell.js';
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

/** The root the host package's units serve (their ExecStart paths name it). */
export const PACKAGE_ROOT = '/var/lib/hitless';
const UNIT_DIRS = ['/etc/systemd/system', '/lib/systemd/system', '/usr/lib/systemd/system'];
export const KEEPER_UNIT = 'hitless-keeper.service';
export const genUnit = (gen: string) => `hitless-gen@${gen}.service`;

export interface Supervision {
  mode: 'systemd' | 'detached';
  why: string;
}

/** How this host's processes are run (sd_booted's test: /run/systemd/system exists). */
export function supervision(root: string, where: { runDir: string; unitDirs: readonly string[] } = { runDir: '/run/systemd/system', unitDirs: UNIT_DIRS }): Supervision {
  if (!existsSync(where.runDir)) return { mode: 'detached', why: 'systemd is not PID 1 on this host' };
  if (resolve(root) !== PACKAGE_ROOT) return { mode: 'detached', why: `the agent's root is ${root}; the host package's units serve ${PACKAGE_ROOT}` };
  const has = (unit: string) => where.unitDirs.some((d) => existsSync(join(d, unit)));
  if (!has(KEEPER_UNIT) || !has('hitless-gen@.service')) return { mode: 'detached', why: `systemd is PID 1 but ${KEEPER_UNIT} and hitless-gen@.service are not installed` };
  return { mode: 'systemd', why: `systemd units: ${KEEPER_UNIT}, hitless-gen@<gen>.service (logs: journalctl -u 'hitless-*')` };
}

const SYSTEMD_ENV = ['NOTIFY_SOCKET', 'INVOCATION_ID', 'LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'WATCHDOG_PID', 'WATCHDOG_USEC'];

const systemctl = (...args: string[]) =>
  new Promise<{ code: number; out: string }>((res) => execFile('systemctl', args, { encoding: 'utf8' }, (e, out, err) => res({ code: e ? Number((e as { code?: unknown }).code ?? 1) || 1 : 0, out: `${out}${err}`.trim() })));

/** The main process systemd names for a unit (0: none), or null where that cannot be read. */
export async function unitMainPid(unit: string): Promise<number | null> {
  const r = await systemctl('show', '--property=MainPID', '--value', unit);
  return r.code === 0 && /^\d+$/.test(r.out) ? Number(r.out) : null;
}

export class Supervisor {
  private readonly ctls = new Map<string, CtlClient>();
  private keeperCtlPid: number | null = null;
  readonly supervision: Supervision;

  constructor(
    readonly root: string,
    private readonly cfg: AgentConfig,
  ) {
    this.supervision = supervision(root);
  }

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

  /** Start a process (a systemd unit when unit is given and the host runs them, else detached
   * logging to logPath) and wait until its control socket answers. */
  private async launch(bin: string, args: string[], logPath: string, ctlPath: string, what: string, unit: string | null): Promise<CtlClient> {
    let exited: () => Promise<string | null>;
    let kill: () => void;
    if (unit && this.supervision.mode === 'systemd') {
      const r = await systemctl('start', unit);
      if (r.code !== 0) throw new Error(`${what}: systemctl start ${unit} failed: ${r.out}`);
      exited = async () => ((await systemctl('is-failed', '--quiet', unit)).code === 0 ? `${unit} failed; see journalctl -u ${unit}` : null);
      kill = () => void systemctl('stop', unit);
    } else {
      const log = openSync(logPath, 'a');
      // not a systemd unit's process: a notify socket or unit id the agent inherited (an agent
      // run by a unit) is not the keeper's or the generation's to act on
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !SYSTEMD_ENV.includes(k)));
      const child = spawn(bin, args, { detached: true, stdio: ['ignore', log, log], env });
      closeSync(log);
      let code: number | null = null;
      child.once('exit', (c) => (code = c ?? -1));
      child.unref();
      exited = async () => (code !== null ? `exited during start-up (code ${code}); see ${logPath}` : null);
      kill = () => child.kill('SIGKILL');
    }
    // a DPDK start-up takes about a second here, and much longer on a loaded host (memory
    // initialised page by page, every driver plugin loaded): wait as long as that can take
    for (let i = 0; i < START_TIMEOUT_MS / 50; i++) {
      const why = await exited();
      if (why !== null) throw new Error(`${what} ${why}`);
      if (existsSync(ctlPath)) {
        try {
          return await CtlClient.connect(ctlPath, 1000);
        } catch {
          /* not listening yet */
        }
      }
      await sleep(50);
    }
    kill();
    throw new Error(`${what}: no control socket after ${START_TIMEOUT_MS / 1000} s; see ${unit && this.supervision.mode === 'systemd' ? `journalctl -u ${unit}` : logPath}`);
  }

  /** The keeper's control client, starting the keeper when none runs. */
  async keeper(): Promise<CtlClient> {
    const cached = this.ctls.get('keeper');
    // the client of this very keeper process (one restarted under the same pidfile is another)
    if (cached && this.keeperCtlPid === this.keeperPid() && alive(this.keeperPid())) return cached;
    cached?.close();
    mkdirSync(this.keeperDir, { recursive: true });
    const ctlPath = join(this.keeperDir, 'ctl.sock');
    let ctl: CtlClient;
    if (alive(this.keeperPid())) ctl = await CtlClient.connect(ctlPath);
    else {
      ctl = await this.launch(join(this.root, 'bin', 'hitless-keeper'), ['--run-dir', this.keeperDir], join(this.root, 'run', 'keeper.log'), ctlPath, 'hitless-keeper', KEEPER_UNIT);
      // its socket listens a moment before it names itself in keeper.pid: a client recorded
      // against no pid would be taken for another keeper's at the next call, and closed under
      // whoever holds it
      for (let i = 0; i < START_TIMEOUT_MS / 20 && !alive(this.keeperPid()) && !ctl.isClosed(); i++) await sleep(20);
      if (!alive(this.keeperPid())) {
        ctl.close();
        throw new Error(`hitless-keeper answered on ${ctlPath} but named no running process in ${join(this.keeperDir, 'keeper.pid')}; see ${join(this.root, 'run', 'keeper.log')}`);
      }
    }
    this.ctls.set('keeper', ctl);
    this.keeperCtlPid = this.keeperPid();
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
        const bin = join(this.root, 'releases', release, 'bin', 'hitless-dp');
        // the unit runs what the agent writes here: the verified release's binary, these arguments
        if (this.supervision.mode === 'systemd') writeFileSync(join(dir, 'exec'), `#!/bin/sh\n# ${genUnit(gen)} runs this; written by hitless-agent\nexec ${[bin, ...args].map(shellWord).join(' ')}\n`, { mode: 0o644 });
        const ctl = await this.launch(bin, args, log, join(dir, 'ctl.sock'), `hitless-dp ${gen}`, genUnit(gen));
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
    // a unit whose process was signalled ends "failed": not a failure an operator should see
    if (this.supervision.mode === 'systemd') await systemctl('reset-failed', genUnit(gen));
  }

  close(): void {
    for (const c of this.ctls.values()) c.close();
    this.ctls.clear();
  }
}
