// An SSH session to a host's agent: ssh2 with OpenSSH's rules — the alias resolved by ssh -G
// (sshConfig.ts), every host key checked against known_hosts (match, or certified by a CA it
// trusts: go; changed or revoked: refuse and say why; unknown: per StrictHostKeyChecking —
// refuse, ask the operator, or accept — and remember an accepted key), ssh-agent's keys then
// the identity files (IdentitiesOnly: the files only; an encrypted one with its passphrase),
// ServerAlive keepalives, ProxyJump through a chain of hops. The agent runs on an exec channel (`hitless-agent --stdio`)
// and speaks JSON-RPC over it: no port is opened on the host.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Duplex } from 'node:stream';
import ssh2, { Client, type ConnectConfig, type OpenSSHAgent, type ParsedKey, type SFTPWrapper } from 'ssh2';

// (ssh2 is CommonJS: these two are read off its default export)
const { OpenSSHAgent: AgentBase, utils } = ssh2;
import { AgentClient } from '../../../../agent/src/client/agentClient.js';
import { fingerprint, keyType, rememberHostKey, verifyHostKey } from './knownHosts.js';
import { certifies, hostCertificates } from './hostCert.js';
import { parseHop, resolveHost, type SshTarget } from './sshConfig.js';

/** Asked when a host presents a key known_hosts does not have: true to trust (and remember) it. */
export type UnknownKeyDecision = (target: SshTarget, keyType: string, fingerprint: string, key: Buffer) => Promise<boolean>;

export class HostKeyError extends Error {
  constructor(
    readonly kind: 'changed' | 'revoked' | 'unknown',
    message: string,
  ) {
    super(message);
    this.name = 'HostKeyError';
  }
}

export interface AgentSession {
  target: SshTarget;
  agent: AgentClient;
  /**
   * Copy a local file to the host over SFTP on this connection, into a directory of its own
   * (under /tmp, mode 0700, named at random) for the agent to take from there. remove() deletes
   * the copy and its directory.
   */
  upload(local: string, progress?: (sent: number, total: number) => void): Promise<{ path: string; remove: () => Promise<void> }>;
  /** Resolves when the agent's command has ended: its exit code (127: not found) and the end of its stderr. */
  exited: Promise<{ code: number | null; stderr: string }>;
  close(): void;
  /** Resolves when the SSH connection ends (closed, dropped, keepalive timeout). */
  closed: Promise<void>;
}

export interface SessionOptions {
  sshConfig?: string;
  /** the config is one the console was started with (its Match exec lines may run) */
  trustedConfig?: boolean;
  decideUnknown?: UnknownKeyDecision;
  /** keepalive when the config sets no ServerAliveInterval (ms) */
  keepaliveMs?: number;
  /** handshake timeout when the config sets no ConnectTimeout (ms) */
  timeoutMs?: number;
  /** for an encrypted identity file */
  passphrase?: string;
  /** asked for an encrypted identity file's passphrase when none was given (null: skip it) */
  askPassphrase?: (file: string) => Promise<string | null>;
}

/** The key files OpenSSH would offer, readable, each parsed (an encrypted one with the passphrase). */
async function identities(t: SshTarget, opts: SessionOptions): Promise<{ keys: { file: string; key: Buffer; passphrase?: string }[]; locked: string[] }> {
  const keys: { file: string; key: Buffer; passphrase?: string }[] = [];
  const locked: string[] = [];
  for (const file of t.identityFiles) {
    let key: Buffer;
    try {
      key = readFileSync(file);
    } catch {
      continue; // OpenSSH's defaults name files that need not exist
    }
    if (!(utils.parseKey(key) instanceof Error)) {
      keys.push({ file, key });
      continue;
    }
    const pass = opts.passphrase ?? (await opts.askPassphrase?.(file)) ?? null;
    const parsed = pass ? utils.parseKey(key, pass) : null;
    if (parsed && !(parsed instanceof Error)) keys.push({ file, key, passphrase: pass! });
    else locked.push(file);
  }
  return { keys, locked };
}

/** ssh-agent offering only the keys whose public halves are among pubs (IdentitiesOnly). */
class OnlyAgent extends AgentBase {
  constructor(
    socket: string,
    private readonly pubs: Set<string>,
  ) {
    super(socket);
  }
  override getIdentities(cb: Parameters<OpenSSHAgent['getIdentities']>[0]): void {
    super.getIdentities((err, keys) => cb(err, keys?.filter((k) => 'getPublicSSH' in k && this.pubs.has((k as ParsedKey).getPublicSSH().toString('base64')))));
  }
}

/** The public halves (base64 blobs) of the identity files: their .pub beside them. */
function publicHalves(files: string[]): Set<string> {
  const out = new Set<string>();
  for (const f of files) {
    try {
      const b64 = readFileSync(`${f}.pub`, 'utf8').trim().split(/\s+/)[1];
      if (b64) out.add(b64);
    } catch {
      /* none beside it */
    }
  }
  return out;
}

/** OpenSSH's order: the agent's keys, then the identity files; IdentitiesOnly: the agent's
 * keys that are those files', then the files. */
function authMethods(t: SshTarget, keys: { key: Buffer; passphrase?: string }[]): AuthHandler {
  const agent = t.identityAgent ? (t.identitiesOnly ? new OnlyAgent(t.identityAgent, publicHalves(t.identityFiles)) : t.identityAgent) : null;
  return [
    ...(agent ? [{ type: 'agent' as const, username: t.user, agent }] : []),
    ...keys.map((k) => ({ type: 'publickey' as const, username: t.user, key: k.key, ...(k.passphrase ? { passphrase: k.passphrase } : {}) })),
  ];
}
type AuthHandler = NonNullable<ConnectConfig['authHandler']> & unknown[];

/** The name a host's keys are known under: HostKeyAlias, else the host, else (a hop reached
 * through a jump host by address) what the config called it. */
const keyName = (t: SshTarget) => t.hostKeyAlias ?? t.host;

async function connect(t: SshTarget, opts: SessionOptions, sock?: Duplex, via?: () => Promise<Duplex>): Promise<Client> {
  const { keys, locked } = await identities(t, opts);
  const methods = authMethods(t, keys);
  if (keys.length === 0 && !t.identityAgent)
    throw new Error(locked.length ? `${locked.join(', ')}: encrypted, and no passphrase was given for it (give it, or load the key into ssh-agent)` : `no identity to log in to ${t.alias} with: no IdentityFile readable (${t.identityFiles.join(', ') || 'none'}) and no ssh-agent`);
  return new Promise((resolve, reject) => {
    const c = new Client();
    let keyError: Error | null = null;
    c.once('ready', () => resolve(c));
    c.once('error', (e) => {
      const authFailed = /All configured authentication methods failed/.test(e.message);
      reject(keyError ?? (authFailed && locked.length ? new Error(`${e.message} (not tried: ${locked.join(', ')}, encrypted, no passphrase)`) : e));
    });
    const name = keyName(t);
    const hostVerifier = (key: Buffer, verify: (ok: boolean) => void) => {
      const v = verifyHostKey(t.knownHosts, name, t.port, key);
      const fp = fingerprint(key);
      if (v.kind === 'match') return verify(true);
      if (v.kind === 'changed') {
        keyError = new HostKeyError('changed', `host key of ${t.alias} (${t.host}:${t.port}) has CHANGED: it presents ${fp}, known_hosts has ${v.known.join(', ')}. Refusing to connect: check the host before you update known_hosts.`);
        return verify(false);
      }
      if (v.kind === 'revoked') {
        keyError = new HostKeyError('revoked', `host key ${fp} of ${t.alias} is marked @revoked in known_hosts`);
        return verify(false);
      }
      let certWhy = '';
      const unknown = (why: string) => {
        const other = v.otherTypes.length ? `; known_hosts knows ${t.alias} by another type of key (${v.otherTypes.join(', ')}), not ${keyType(key)}` : '';
        return new HostKeyError('unknown', `host key of ${t.alias} (${t.host}:${t.port}) is not in known_hosts (${fp}, ${keyType(key)})${other}${certWhy}; ${why}`);
      };
      const decide = () => {
        // yes: never trust an unknown key; accept-new and no: trust it and remember it (a
        // changed key is refused whatever the setting); ask: the operator decides
        if (t.strict === 'yes' || (t.strict === 'ask' && !opts.decideUnknown)) {
          keyError = unknown(`StrictHostKeyChecking ${t.strict}`);
          return verify(false);
        }
        const ask = t.strict === 'ask' ? opts.decideUnknown!(t, keyType(key), fp, key) : Promise.resolve(true);
        ask.then(
          (ok) => {
            if (ok) rememberHostKey(t.knownHosts[0]!, name, t.port, key);
            else keyError = new HostKeyError('unknown', `host key ${fp} of ${t.alias} was not accepted`);
            verify(ok);
          },
          () => verify(false),
        );
      };
      if (v.cas.length === 0) return decide();
      // a CA known_hosts trusts for this name: the host's certificate may vouch for the key
      hostCertificates(t.host, t.port, via).then(
        (certs) => {
          const c = certifies(certs, key, name, v.cas, v.revoked);
          if (c.ok) return verify(true);
          if (/@revoked/.test(c.why)) {
            keyError = new HostKeyError('revoked', `host key ${fp} of ${t.alias}: ${c.why}`);
            return verify(false);
          }
          certWhy = `, and no certificate vouches for it (${c.why})`;
          decide();
        },
        () => decide(),
      );
    };
    c.connect({
      host: t.host,
      port: t.port,
      username: t.user,
      authHandler: methods,
      ...(sock ? { sock: sock as ConnectConfig['sock'] } : {}),
      readyTimeout: t.connectTimeout ? t.connectTimeout * 1000 : (opts.timeoutMs ?? 10000),
      keepaliveInterval: t.serverAliveInterval > 0 ? t.serverAliveInterval * 1000 : (opts.keepaliveMs ?? 5000),
      keepaliveCountMax: t.serverAliveCountMax,
      hostVerifier,
    });
  });
}

async function upload(ssh: Client, local: string, progress?: (sent: number, total: number) => void): Promise<{ path: string; remove: () => Promise<void> }> {
  const sftp = await new Promise<SFTPWrapper>((res, rej) => ssh.sftp((e, s) => (e ? rej(e) : res(s))));
  const call = (f: (cb: (e?: Error | null) => void) => void) => new Promise<void>((res, rej) => f((e) => (e ? rej(e) : res())));
  const dir = `/tmp/hitless-upload-${randomBytes(8).toString('hex')}`;
  const path = `${dir}/${basename(local)}`;
  const remove = async () => {
    await call((cb) => sftp.unlink(path, cb)).catch(() => undefined);
    await call((cb) => sftp.rmdir(dir, cb)).catch(() => undefined);
    sftp.end();
  };
  try {
    // made, not found: a directory someone else made under that name fails here
    await call((cb) => sftp.mkdir(dir, { mode: 0o700 }, cb));
    await call((cb) => sftp.fastPut(local, path, { mode: 0o600, step: (sent, _chunk, total) => progress?.(sent, total) }, cb));
  } catch (e) {
    await remove();
    throw new Error(`uploading ${basename(local)} to ${path}: ${(e as Error).message}`);
  }
  return { path, remove };
}

/** A ProxyJump hop as a target: resolved by the config like any host, its user and port
 * overriding. */
function hopTarget(hop: string, opts: SessionOptions): SshTarget {
  const h = parseHop(hop);
  const t = resolveHost(h.host, opts.sshConfig, opts.trustedConfig ?? true);
  return { ...t, ...(h.user ? { user: h.user } : {}), ...(h.port ? { port: h.port } : {}) };
}

/** An SSH connection to target through its ProxyJump hops (each one's host key checked), the
 * hops closed with it, and closed at once when a later hop or the target fails. */
async function dial(target: SshTarget, opts: SessionOptions): Promise<{ ssh: Client; end(): void }> {
  const hops: Client[] = [];
  const endAll = () => {
    for (const h of hops.reverse()) h.end();
  };
  try {
    let sock: Duplex | undefined;
    let via: (() => Promise<Duplex>) | undefined;
    const chain = [...target.proxyJump.map((h) => hopTarget(h, opts)), target];
    for (let i = 0; i < chain.length; i++) {
      const t = chain[i]!;
      const ssh = await connect(t, opts, sock, via);
      if (i === chain.length - 1) {
        return {
          ssh,
          end() {
            ssh.end();
            endAll();
          },
        };
      }
      hops.push(ssh);
      const next = chain[i + 1]!;
      via = () => new Promise<Duplex>((res, rej) => ssh.forwardOut('127.0.0.1', 0, next.host, next.port, (e, s) => (e ? rej(e) : res(s))));
      sock = await via();
    }
    throw new Error('unreachable');
  } catch (e) {
    endAll();
    throw e;
  }
}

/** Open an SSH session to alias and start the agent on it. */
export async function openAgentSession(alias: string, agentCommand: string, opts: SessionOptions = {}): Promise<AgentSession> {
  return openAgentSessionTo(resolveHost(alias, opts.sshConfig, opts.trustedConfig ?? true), agentCommand, opts);
}

/** Open an SSH session to an already resolved target (a host added by address) and start the agent. */
export async function openAgentSessionTo(target: SshTarget, agentCommand: string, opts: SessionOptions = {}): Promise<AgentSession> {
  const conn = await dial(target, opts);
  const { ssh } = conn;
  let channel: import('ssh2').ClientChannel;
  try {
    channel = await new Promise<import('ssh2').ClientChannel>((res, rej) => ssh.exec(agentCommand, (e, ch) => (e ? rej(e) : res(ch))));
  } catch (e) {
    conn.end();
    throw e;
  }
  let stderr = '';
  channel.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4096)));
  const exited = new Promise<{ code: number | null; stderr: string }>((res) => {
    let code: number | null = null;
    channel.once('exit', (c: number | null) => (code = c));
    channel.once('close', () => res({ code, stderr: stderr.trim() }));
  });
  const agent = new AgentClient(channel, channel);
  // when the channel or the connection goes, pending requests fail instead of waiting forever;
  // an agent that ends (killed, crashed, replaced) ends the session: the console reconnects
  const closed = new Promise<void>((res) => ssh.once('close', () => res()));
  channel.once('close', () => {
    agent.dispose();
    conn.end();
  });
  return {
    target,
    agent,
    closed,
    exited,
    upload: (local, progress) => upload(ssh, local, progress),
    close() {
      agent.dispose();
      channel.end();
      conn.end();
    },
  };
}

/** What a command run over SSH printed, and how it ended. */
export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A plain SSH connection to a host (no agent): for installing the agent itself. */
export interface HostShell {
  target: SshTarget;
  /** Run one command (the host's login shell parses it) and collect its output. */
  exec(command: string): Promise<ExecResult>;
  upload: AgentSession['upload'];
  close(): void;
}

export async function openShellTo(target: SshTarget, opts: SessionOptions = {}): Promise<HostShell> {
  const conn = await dial(target, opts);
  const { ssh } = conn;
  return {
    target,
    exec: (command) =>
      new Promise((resolve, reject) =>
        ssh.exec(command, (e, ch) => {
          if (e) return reject(e);
          let stdout = '';
          let stderr = '';
          let code: number | null = null;
          ch.on('data', (d: Buffer) => (stdout += d.toString()));
          ch.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
          ch.once('exit', (c: number | null) => (code = c));
          ch.once('close', () => resolve({ code, stdout, stderr }));
          ch.end(); // nothing to read: a command that asks gets end of input, never a hang
        }),
      ),
    upload: (local, progress) => upload(ssh, local, progress),
    close: () => conn.end(),
  };
}
