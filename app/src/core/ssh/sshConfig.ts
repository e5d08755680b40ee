// Resolving a host alias the way OpenSSH does, from ~/.ssh/config (or a given file): HostName,
// User, Port, IdentityFile, ProxyJump, UserKnownHostsFile, StrictHostKeyChecking. Parsing and
// Host/Match evaluation come from the ssh-config library.
import { readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import SSHConfig from 'ssh-config';

export interface SshTarget {
  alias: string;
  host: string;
  port: number;
  user: string;
  identityFiles: string[];
  proxyJump: string | null;
  knownHosts: string[];
  strict: 'yes' | 'no' | 'ask' | 'accept-new';
}

function tilde(p: string): string {
  return p.startsWith('~/') ? join(homedir(), p.slice(2)) : p;
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function all(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).flatMap((x) => x.split(/\s+/)).filter((x) => x !== '');
}

export function resolveHost(alias: string, configPath = join(homedir(), '.ssh', 'config')): SshTarget {
  let text = '';
  try {
    text = readFileSync(configPath, 'utf8');
  } catch {
    text = '';
  }
  const c = SSHConfig.parse(text).compute(alias);
  const portText = first(c.Port) ?? '22';
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${configPath}: host ${alias}: Port ${portText} is not a port number`);
  const strict = (first(c.StrictHostKeyChecking) ?? 'ask').toLowerCase();
  const jump = first(c.ProxyJump);
  return {
    alias,
    host: first(c.HostName) ?? alias,
    port,
    user: first(c.User) ?? userInfo().username,
    identityFiles: all(c.IdentityFile).map(tilde),
    proxyJump: jump && jump !== 'none' ? jump : null,
    knownHosts: (all(c.UserKnownHostsFile).length ? all(c.UserKnownHostsFile) : ['~/.ssh/known_hosts']).map(tilde),
    strict: (['yes', 'no', 'ask', 'accept-new'].includes(strict) ? strict : 'ask') as SshTarget['strict'],
  };
}
