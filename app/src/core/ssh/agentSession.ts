// An SSH session to a host's agent: ssh2 with OpenSSH's rules — the alias resolved from the
// ssh config, every host key checked against known_hosts (match: go; changed or revoked:
// refuse and say why; unknown: refuse under StrictHostKeyChecking yes, otherwise ask the
// operator and remember an accepted key), keys from IdentityFile or ssh-agent, keepalive on,
// ProxyJump through one jump host. The agent runs on an exec channel (`hitless-agent --stdio`)
// and speaks JSON-RPC over it: no port is opened on the host.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { Client, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { AgentClient } from '../../../../agent/src/client/agentClient.js';
import { fingerprint, keyType, rememberHostKey, verifyHostKey } from './knownHosts.js';
import { resolveHost, type SshTarget } from './sshConfig.js';

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
  decideUnknown?: UnknownKeyDecision;
  keepaliveMs?: number;
  timeoutMs?: number;
  /** for an encrypted identity file */
  passphrase?: string;
}

function authOf(t: SshTarget, passphrase?: string): Partial<ConnectConfig> {
  for (const f of t.identityFiles) {
    try {
      return { privateKey: readFileSync(f), ...(passphrase ? { passphrase } : {}) };
    } catch {
      /* next */
    }
  }
  return process.env.SSH_AUTH_SOCK ? { agent: process.env.SSH_AUTH_SOCK } : {};
}

function connect(t: SshTarget, opts: SessionOptions, sock?: NodeJS.ReadableStream): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    let keyError: Error | null = null;
    c.once('ready', () => resolve(c));
    c.once('error', (e) => reject(keyError ?? e));
    c.connect({
      host: t.host,
      port: t.port,
      username: t.user,
      ...authOf(t, opts.passphrase),
      ...(sock ? { sock: sock as ConnectConfig['sock'] } : {}),
      readyTimeout: opts.timeoutMs ?? 10000,
      keepaliveInterval: opts.keepaliveMs ?? 5000,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer, verify: (ok: boolean) => void) => {
        const v = verifyHostKey(t.knownHosts, t.host, t.port, key);
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
        if (t.strict === 'yes' || !opts.decideUnknown) {
          keyError = new HostKeyError('unknown', `host key of ${t.alias} (${t.host}:${t.port}) is not in known_hosts (${fp}, ${keyType(key)}); StrictHostKeyChecking ${t.strict}`);
          return verify(false);
        }
        opts.decideUnknown(t, keyType(key), fp, key).then(
          (ok) => {
            if (ok) rememberHostKey(t.knownHosts[0]!, t.host, t.port, key);
            else keyError = new HostKeyError('unknown', `host key ${fp} of ${t.alias} was not accepted`);
            verify(ok);
          },
          () => verify(false),
        );
      },
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

/** An SSH connection to target (through its ProxyJump host when it has one), host keys checked. */
async function dial(target: SshTarget, opts: SessionOptions): Promise<{ ssh: Client; end(): void }> {
  let jump: Client | null = null;
  let sock: NodeJS.ReadableStream | undefined;
  try {
    if (target.proxyJump) {
      jump = await connect(resolveHost(target.proxyJump, opts.sshConfig), opts);
      sock = await new Promise((res, rej) => jump!.forwardOut('127.0.0.1', 0, target.host, target.port, (e, s) => (e ? rej(e) : res(s))));
    }
    const ssh = await connect(target, opts, sock);
    return {
      ssh,
      end() {
        ssh.end();
        jump?.end();
      },
    };
  } catch (e) {
    jump?.end();
    throw e;
  }
}

/** Open an SSH session to alias and start the agent on it. */
export async function openAgentSession(alias: string, agentCommand: string, opts: SessionOptions = {}): Promise<AgentSession> {
  return openAgentSessionTo(resolveHost(alias, opts.sshConfig), agentCommand, opts);
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
