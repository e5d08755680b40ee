// Resolving a host the way OpenSSH does: `ssh -G` evaluates the config (Host and Match blocks,
// Include, defaults such as the identity files tried) and this reads what it prints; the
// %-tokens and ~ OpenSSH expands in IdentityFile and known-hosts paths are expanded here.
// `Match exec` runs a command while the config is evaluated, so a config file the console was
// not started with (one named by a fleet entry, which the renderer can set) is refused when it
// or a file it includes holds one.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { sshPattern } from '../../../../protocol/patterns.js';

export interface SshTarget {
  alias: string;
  host: string;
  port: number;
  user: string;
  /** the identity files to try, in order (OpenSSH's defaults when the config names none) */
  identityFiles: string[];
  /** only the identity files (and agent keys whose public halves are beside them) */
  identitiesOnly: boolean;
  /** the ssh-agent socket (IdentityAgent, else SSH_AUTH_SOCK); null: none */
  identityAgent: string | null;
  /** ProxyJump hops, first to last: each [user@]host[:port], resolved like a host */
  proxyJump: string[];
  /** known_hosts files: the user's (accepted keys go to the first), then the global ones */
  knownHosts: string[];
  /** the name host keys are looked up under (HostKeyAlias, else the host name) */
  hostKeyAlias: string | null;
  strict: 'yes' | 'no' | 'ask' | 'accept-new';
  /** ServerAliveInterval (s; 0: the console's default) and ServerAliveCountMax */
  serverAliveInterval: number;
  serverAliveCountMax: number;
  /** ConnectTimeout (s), null: none set */
  connectTimeout: number | null;
}

export class SshConfigError extends Error {}

/** OpenSSH's ~ and %-tokens in a path option (ssh_config(5) TOKENS). */
function expand(p: string, t: { host: string; port: number; user: string; alias: string }): string {
  const local = userInfo().username;
  const s = p.replace(/%(.)/g, (m, c: string) => {
    const v: Record<string, string> = { '%': '%', d: homedir(), h: t.host, p: String(t.port), r: t.user, u: local, n: t.alias, i: String(userInfo().uid) };
    if (!(c in v)) throw new SshConfigError(`%${c} in ${p}: a token the console does not expand`);
    return v[c]!;
  });
  return s === '~' ? homedir() : s.startsWith('~/') ? join(homedir(), s.slice(2)) : s;
}

/** The files a config reads: itself and what its Include lines name (globs in the last part). */
function configFiles(path: string, seen = new Set<string>()): string[] {
  if (seen.has(path) || !existsSync(path)) return [];
  seen.add(path);
  const out = [path];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^\s*include\s+(.+)$/i.exec(line);
    if (!m) continue;
    for (const word of m[1]!.trim().split(/\s+/)) {
      const p = word.startsWith('~') ? expand(word, { host: '', port: 22, user: '', alias: '' }) : isAbsolute(word) ? word : join(homedir(), '.ssh', word);
      const re = sshPattern(basename(p), true);
      const dir = dirname(p);
      const names = existsSync(dir) ? readdirSync(dir).filter((n) => re.test(n)).sort() : [];
      for (const n of names) out.push(...configFiles(join(dir, n), seen));
    }
  }
  return out;
}

/** Where a config (or a file it includes) would run a command while it is evaluated. */
export function matchExec(configPath: string): string | null {
  for (const f of configFiles(configPath)) {
    const lines = readFileSync(f, 'utf8').split('\n');
    const i = lines.findIndex((l) => /^\s*match\b.*\bexec\b/i.test(l));
    if (i >= 0) return `${f}:${i + 1}`;
  }
  return null;
}

/** One ProxyJump hop, "[user@]host[:port]" or an ssh:// URI. */
export function parseHop(hop: string): { user: string | null; host: string; port: number | null } {
  const m = /^(?:ssh:\/\/)?(?:([^@]+)@)?(\[[^\]]+\]|[^:@/]+)(?::(\d+))?\/?$/.exec(hop);
  if (!m) throw new SshConfigError(`ProxyJump hop '${hop}': not [user@]host[:port]`);
  return { user: m[1] ?? null, host: m[2]!.replace(/^\[(.*)\]$/, '$1'), port: m[3] ? Number(m[3]) : null };
}

/**
 * Resolve alias with ssh -G against configPath (no file: OpenSSH's defaults). trusted: the
 * config is one the console was started with, whose Match exec lines may run.
 */
export function resolveHost(alias: string, configPath = join(homedir(), '.ssh', 'config'), trusted = true): SshTarget {
  if (!/^[A-Za-z0-9_.:%[\]-]+$/.test(alias) || alias.startsWith('-')) throw new SshConfigError(`'${alias}': not a host name or alias`);
  const file = existsSync(configPath) ? configPath : '/dev/null';
  if (!trusted && file !== '/dev/null') {
    const at = matchExec(file);
    if (at) throw new SshConfigError(`${at}: Match exec runs a command; the console runs it only from the ssh config it was started with (--ssh-config), not from ${configPath}`);
  }
  let out: string;
  try {
    out = execFileSync('ssh', ['-G', '-F', file, alias], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  } catch (e) {
    const err = (e as { stderr?: string }).stderr?.trim();
    throw new SshConfigError(`${configPath}: ssh -G ${alias}: ${err || (e as Error).message}`);
  }
  const opts = new Map<string, string[]>();
  for (const line of out.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp < 0) continue;
    const k = line.slice(0, sp).toLowerCase();
    opts.set(k, [...(opts.get(k) ?? []), line.slice(sp + 1)]);
  }
  const one = (k: string) => opts.get(k)?.[0];
  const num = (k: string, dflt: number) => {
    const v = one(k);
    return v === undefined || v === 'none' || !/^\d+$/.test(v) ? dflt : Number(v);
  };
  const host = one('hostname') ?? alias;
  const port = num('port', 22);
  const user = one('user') ?? userInfo().username;
  const t = { host, port, user, alias };
  const strictRaw = (one('stricthostkeychecking') ?? 'ask').toLowerCase();
  const strict: SshTarget['strict'] = strictRaw === 'true' || strictRaw === 'yes' ? 'yes' : strictRaw === 'false' || strictRaw === 'no' ? 'no' : strictRaw === 'accept-new' ? 'accept-new' : 'ask';
  const files = (k: string) => (opts.get(k) ?? []).flatMap((v) => v.split(/\s+/)).filter((v) => v && v !== 'none').map((v) => expand(v, t));
  const agent = one('identityagent');
  const jump = one('proxyjump');
  return {
    alias,
    host,
    port,
    user,
    identityFiles: files('identityfile'),
    identitiesOnly: one('identitiesonly') === 'yes',
    identityAgent: agent === 'none' ? null : agent && agent !== 'SSH_AUTH_SOCK' ? expand(agent.replace(/^\$SSH_AUTH_SOCK$/, process.env.SSH_AUTH_SOCK ?? ''), t) || null : (process.env.SSH_AUTH_SOCK ?? null),
    proxyJump: jump && jump !== 'none' ? jump.split(',').map((h) => h.trim()).filter(Boolean) : [],
    knownHosts: [...files('userknownhostsfile'), ...files('globalknownhostsfile')],
    hostKeyAlias: one('hostkeyalias') ?? null,
    strict,
    serverAliveInterval: num('serveraliveinterval', 0),
    serverAliveCountMax: num('serveralivecountmax', 3),
    connectTimeout: one('connecttimeout') === 'none' ? null : num('connecttimeout', 0) || null,
  };
}
