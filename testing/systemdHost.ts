// A host where systemd is PID 1, for what runs as the host package's units (this machine's PID 1
// is not systemd): this machine's own root booted in a container by systemd-nspawn. The root is
// an overlay (this machine's root file system below, a tmpfs above: what the container changes
// goes with it), booted to basic.target (the services this machine has enabled, OVS among them,
// stay off), on the host's network, with directories of this machine bound in (the repository;
// a scratch directory at a path of the container, so processes outside reach sockets inside).
// No machined or D-Bus here: nspawn keeps its own cgroup (--keep-unit), commands run inside
// through nsenter into the container's namespaces.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

const BOOT_TIMEOUT_MS = 60_000;

export interface Bind {
  /** the host's path */
  host: string;
  /** where it appears inside (default: the same path) */
  inside?: string;
  readOnly?: boolean;
}

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Why a systemd container cannot run here, or null when it can. */
export function systemdHostUnavailable(): string | null {
  for (const bin of ['/usr/bin/systemd-nspawn', '/usr/bin/nsenter', '/lib/systemd/systemd'])
    if (!existsSync(bin)) return `${bin} is missing (scripts/setup.sh installs systemd-container and systemd)`;
  if (process.getuid?.() !== 0) return 'systemd-nspawn needs root';
  return null;
}

export class SystemdHost {
  private log = '';
  /** nsenter wrappers of long-running processes inside: killed before the container stops */
  private readonly spawned = new Set<ChildProcess>();

  private constructor(
    readonly name: string,
    private readonly nspawn: ChildProcess,
    /** the container's PID 1 (systemd), as this machine numbers it */
    readonly leader: number,
    private readonly base: string,
  ) {}

  /** Boot a container named name and wait until its systemd has finished starting up. */
  static async boot(name: string, binds: readonly Bind[]): Promise<SystemdHost> {
    const why = systemdHostUnavailable();
    if (why) throw new Error(`no systemd host: ${why}`);
    // the root: this machine's root file system under a tmpfs
    const base = `/var/tmp/hl-sdhost-${name}`;
    mkdirSync(join(base, 'upper'), { recursive: true });
    mustRun('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'tmpfs', join(base, 'upper')]);
    mkdirSync(join(base, 'upper', 'u'));
    mkdirSync(join(base, 'upper', 'w'));
    mkdirSync(join(base, 'root'), { recursive: true });
    mustRun('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=/,upperdir=${base}/upper/u,workdir=${base}/upper/w`, join(base, 'root')]);
    // nspawn keeps its propagation directories under /run/systemd/nspawn and removes them only
    // from a tmpfs (this machine's /run is on disk)
    mkdirSync('/run/systemd/nspawn', { recursive: true });
    if (spawnSync('mountpoint', ['-q', '/run/systemd/nspawn']).status !== 0) mustRun('mount', ['-t', 'tmpfs', 'tmpfs', '/run/systemd/nspawn']);
    const args = ['--quiet', '--keep-unit', '--register=no', `--directory=${base}/root`, '--boot', `--machine=${name}`, '--capability=all', '--console=passive', '--link-journal=no', '--resolv-conf=off', '--timezone=off'];
    for (const b of binds) args.push(`--bind${b.readOnly ? '-ro' : ''}=${b.host}:${b.inside ?? b.host}`);
    args.push('systemd.unit=basic.target');
    const p = spawn('systemd-nspawn', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    p.stdout!.setEncoding('utf8').on('data', (d: string) => (log += d));
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d));
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    let leader = 0;
    while (!leader) {
      if (p.exitCode !== null || p.signalCode !== null) {
        unmount(base);
        throw new Error(`systemd-nspawn exited (${p.exitCode ?? p.signalCode}): ${log.trim()}`);
      }
      if (Date.now() > deadline) {
        p.kill('SIGKILL');
        await new Promise((r) => p.once('exit', r));
        unmount(base);
        throw new Error(`the container's systemd did not start within ${BOOT_TIMEOUT_MS / 1000} s: ${log.trim()}`);
      }
      leader = childSystemd(p.pid!);
      if (!leader) await new Promise((r) => setTimeout(r, 100));
    }
    const h = new SystemdHost(name, p, leader, base);
    h.log = log;
    p.stdout!.on('data', (d: string) => (h.log += d));
    p.stderr!.on('data', (d: string) => (h.log += d));
    // is-system-running --wait: until start-up is over (running, or degraded if a unit failed)
    // (asked again while its private bus socket does not exist yet, and while it says offline:
    // systemctl says so until the booting systemd has made /run/systemd/system, which a slow
    // machine shows for a while after PID 1 is systemd)
    let r = await h.run('systemctl', ['is-system-running', '--wait'], { timeoutMs: Math.max(1000, deadline - Date.now()) });
    while (((!r.stdout.trim() && /Failed to connect to bus/.test(r.stderr)) || /^offline$/m.test(r.stdout)) && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 100));
      r = await h.run('systemctl', ['is-system-running', '--wait'], { timeoutMs: Math.max(1000, deadline - Date.now()) });
    }
    if (!/^(running|degraded)$/m.test(r.stdout)) {
      await h.stop();
      throw new Error(`the container's systemd is ${r.stdout.trim() || 'not answering'}: ${r.stderr.trim()} ${log.trim()}`);
    }
    return h;
  }

  /** Run a command inside the container (all its namespaces, as root); its exit code and output. */
  run(cmd: string, args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<Ran> {
    return new Promise((res) => {
      const c = this.spawn(cmd, args);
      let stdout = '';
      let stderr = '';
      c.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      c.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const timer = setTimeout(() => c.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
      c.on('exit', (code, sig) => {
        clearTimeout(timer);
        res({ code: code ?? (sig ? 128 : 1), stdout, stderr });
      });
      c.stdin!.on('error', () => undefined); // a command that exits before reading its input
      c.stdin!.end(opts.input ?? '');
    });
  }

  /** Like run, and a non-zero exit is an error naming the command and its output. */
  async must(cmd: string, args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    const r = await this.run(cmd, args, opts);
    if (r.code !== 0) throw new Error(`inside ${this.name}: ${cmd} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  }

  /** A long-running process inside the container, its stdio piped here. */
  spawn(cmd: string, args: readonly string[]): ChildProcess {
    const c = spawn('nsenter', [`--target=${this.leader}`, '--all', '--', cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' } });
    this.spawned.add(c);
    c.once('exit', () => this.spawned.delete(c));
    return c;
  }

  /** A unit's property, as systemctl show prints its value. */
  async property(unit: string, prop: string): Promise<string> {
    return (await this.must('systemctl', ['show', `--property=${prop}`, '--value', unit])).trim();
  }

  /** Power the container off (its units stop as on a real shutdown; killed after 30 s), and
   * remove its root. */
  async stop(): Promise<void> {
    // an nsenter outside does not let the container's init reap what it started inside, and
    // the init's shutdown waits for that forever: the wrappers go first, their processes are
    // then the init's to stop and reap
    for (const c of this.spawned) c.kill('SIGKILL');
    if (this.nspawn.exitCode === null && this.nspawn.signalCode === null) {
      const gone = new Promise((r) => this.nspawn.once('exit', r));
      spawnSync('nsenter', [`--target=${this.leader}`, '--all', '--', 'systemctl', 'poweroff', '--no-block'], { stdio: 'ignore' });
      const t = setTimeout(() => {
        // killing a PID namespace's init kills everything in it
        try {
          process.kill(this.leader, 'SIGKILL');
        } catch {
          /* gone */
        }
        this.nspawn.kill('SIGKILL');
      }, 30_000);
      await gone;
      clearTimeout(t);
    }
    unmount(this.base);
  }

  /** What systemd-nspawn printed (its own errors; the container's console is passive). */
  output(): string {
    return this.log;
  }
}

/** The pid of a systemd that is a child of pid (nspawn forks once, then execs systemd), or 0. */
function childSystemd(pid: number): number {
  const kids = (p: number): number[] => {
    try {
      return readdirSync(`/proc/${p}/task`).flatMap((t) =>
        readFileSync(`/proc/${p}/task/${t}/children`, 'utf8')
          .trim()
          .split(/\s+/)
          .filter(Boolean)
          .map(Number),
      );
    } catch {
      return [];
    }
  };
  for (const c of kids(pid)) {
    const comm = (() => {
      try {
        return readFileSync(join('/proc', String(c), 'comm'), 'utf8').trim();
      } catch {
        return '';
      }
    })();
    if (comm === 'systemd') return c;
    for (const g of kids(c)) if (readFileSync(join('/proc', String(g), 'comm'), 'utf8').trim() === 'systemd') return g;
  }
  return 0;
}

function mustRun(cmd: string, args: readonly string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.status}`}`);
}

/** The container's root and its tmpfs unmounted, their directory removed. */
function unmount(base: string): void {
  for (const m of ['root', 'upper']) {
    const dir = join(base, m);
    spawnSync('umount', [dir], { stdio: 'ignore' });
    // never a recursive removal: the root, still mounted, would be this machine's whole tree
    if (spawnSync('mountpoint', ['-q', dir]).status !== 0) rmdirQuiet(dir);
  }
  // (systemd-nspawn's lock beside the root it booted)
  try {
    unlinkSync(join(base, '.#root.lck'));
  } catch {
    /* none */
  }
  rmdirQuiet(base);
}

function rmdirQuiet(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    /* gone, or not empty: left as it is */
  }
}
