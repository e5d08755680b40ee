// Running system tools (ip, ssh-keygen, sshd, meson) and small process helpers.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** A problem the operator can fix; the CLI prints its message alone. */
export class LabError extends Error {}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, never throwing for a non-zero exit. */
export function tryRun(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 127) : 0;
      const timedOut = err?.killed === true ? `\n${cmd}: no answer within ${(opts.timeoutMs ?? 60_000) / 1000} s` : '';
      resolve({ code, stdout: String(stdout), stderr: (String(stderr) || (err && code === 127 && !timedOut ? err.message : '')) + timedOut });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Runs a command and fails with its stderr when it exits non-zero. */
export async function run(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await tryRun(cmd, args, opts);
  if (r.code !== 0) throw new LabError(`${cmd} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

export function ip(...args: string[]): Promise<string> {
  return run('ip', args);
}

/** Runs argv inside network namespace ns. */
export function inNs(ns: string, argv: string[]): Promise<string> {
  return run('ip', ['netns', 'exec', ns, ...argv]);
}

export async function netnsList(): Promise<string[]> {
  const out = await run('ip', ['netns', 'list']);
  return out.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
}

/** Names of every link in the root namespace. */
export async function linkNames(): Promise<string[]> {
  const links = JSON.parse((await run('ip', ['-j', 'link', 'show'])) || '[]') as { ifname: string }[];
  return links.map((l) => l.ifname);
}

/** True if pid is a live process (a zombie waiting for its parent to reap it counts as gone). */
export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The process's command line, or '' if it is gone. */
export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

export function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, then SIGKILL whatever is still alive after graceMs. */
export async function killPids(pids: number[], graceMs = 1000): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch {
        /* already gone */
      }
    }
  };
  signal('SIGTERM');
  for (let waited = 0; waited < graceMs && pids.some(pidAlive); waited += 50) await sleep(50);
  if (pids.some(pidAlive)) {
    signal('SIGKILL');
    for (let waited = 0; waited < 2000 && pids.some(pidAlive); waited += 50) await sleep(50);
  }
}
