// The console's SSH layer against a real OpenSSH sshd on loopback: the agent runs over an exec
// channel; known_hosts decides (match, changed -> refused, unknown -> per StrictHostKeyChecking,
// a host certificate from a trusted CA -> accepted, @revoked -> refused); the config is read as
// OpenSSH reads it (Include, tokens, ProxyJump chains), keys as OpenSSH offers them.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { agent } from '../../../../protocol/agent.js';
import { HostKeyError, openAgentSession } from './agentSession.js';
import { existsSync } from 'node:fs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

function keygen(path: string): string {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path]);
  return readFileSync(`${path}.pub`, 'utf8').trim();
}

describe('SSH to a host agent', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hl-ssh-'));
  let sshd: ChildProcess;
  let port = 0;
  let hostPub = '';
  const agentCmd = () => `${join(repo, 'agent/bin/hitless-agent')} --stdio --root ${join(dir, 'root')}`;
  const config = (name: string, strict: string, knownHosts: string) => {
    const p = join(dir, `ssh_config.${name}`);
    writeFileSync(p, `Host h1\n  HostName 127.0.0.1\n  Port ${port}\n  User root\n  IdentityFile ${join(dir, 'client')}\n  UserKnownHostsFile ${knownHosts}\n  StrictHostKeyChecking ${strict}\n`);
    return p;
  };

  before(async () => {
    port = await freePort();
    hostPub = keygen(join(dir, 'host_ed25519'));
    // the host key certified by the fleet's CA for the name h1.lab
    keygen(join(dir, 'ca'));
    execFileSync('ssh-keygen', ['-q', '-s', join(dir, 'ca'), '-I', 'h1', '-h', '-n', 'h1.lab', '-V', '-1h:+1h', join(dir, 'host_ed25519.pub')]);
    writeFileSync(join(dir, 'authorized_keys'), `${keygen(join(dir, 'client'))}\n`);
    writeFileSync(join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${hostPub.split(' ').slice(0, 2).join(' ')}\n`);
    writeFileSync(
      join(dir, 'sshd_config'),
      [`Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host_ed25519')}`, `HostCertificate ${join(dir, 'host_ed25519-cert.pub')}`, `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        `PidFile ${join(dir, 'sshd.pid')}`, 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'PermitRootLogin prohibit-password',
        'UsePAM no', 'StrictModes no'].join('\n') + '\n',
    );
    mkdirSync('/run/sshd', { recursive: true });
    sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
    // a host root the agent can answer host/info from
    mkdirSync(join(dir, 'root', 'etc'), { recursive: true });
    writeFileSync(join(dir, 'root', 'etc', 'agent.json'), JSON.stringify({ host: 'h1', vms: [] }));
    for (let i = 0; i < 100; i++) {
      try {
        execFileSync('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`], { stdio: 'ignore' });
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });
  after(() => {
    sshd?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  test('runs hitless-agent on an exec channel and speaks JSON-RPC with it, host key verified', async () => {
    const s = await openAgentSession('h1', agentCmd(), { sshConfig: config('ok', 'yes', join(dir, 'known_hosts')) });
    try {
      const info = await s.agent.request(agent.hostInfo, {});
      assert.equal(info.host, 'h1');
      assert.equal(info.root, join(dir, 'root'));
      assert.equal(s.target.port, port);
    } finally {
      s.close();
    }
  });

  test('a changed host key is refused, naming both fingerprints', async () => {
    const other = keygen(join(dir, 'other_host'));
    const kh = join(dir, 'known_hosts.changed');
    writeFileSync(kh, `[127.0.0.1]:${port} ${other.split(' ').slice(0, 2).join(' ')}\n`);
    await assert.rejects(openAgentSession('h1', agentCmd(), { sshConfig: config('changed', 'ask', kh), decideUnknown: async () => true }), (e: unknown) => {
      assert.ok(e instanceof HostKeyError && e.kind === 'changed', String(e));
      assert.match(e.message, /CHANGED: it presents SHA256:\S+, known_hosts has SHA256:\S+/);
      return true;
    });
  });

  test('an unknown key: refused under StrictHostKeyChecking yes; otherwise asked once and remembered', async () => {
    const kh = join(dir, 'known_hosts.empty');
    writeFileSync(kh, '');
    await assert.rejects(openAgentSession('h1', agentCmd(), { sshConfig: config('strict', 'yes', kh) }), (e: unknown) => e instanceof HostKeyError && e.kind === 'unknown');
    let asked = 0;
    const s1 = await openAgentSession('h1', agentCmd(), {
      sshConfig: config('ask', 'ask', kh),
      decideUnknown: async (_t, type, fp) => {
        asked++;
        assert.equal(type, 'ssh-ed25519');
        assert.match(fp, /^SHA256:/);
        return true;
      },
    });
    s1.close();
    assert.match(readFileSync(kh, 'utf8'), /^\|1\|/, 'remembered, hashed');
    const s2 = await openAgentSession('h1', agentCmd(), { sshConfig: config('ask2', 'yes', kh) });
    s2.close();
    assert.equal(asked, 1, 'not asked again');
    // an operator's "no" refuses
    writeFileSync(kh, '');
    await assert.rejects(openAgentSession('h1', agentCmd(), { sshConfig: config('ask3', 'ask', kh), decideUnknown: async () => false }), /not accepted/);
  });
  const pubOf = (f: string) => readFileSync(`${f}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
  const hostInfo = async (name: string, sshConfig: string, more: Parameters<typeof openAgentSession>[2] = {}) => {
    const s = await openAgentSession(name, agentCmd(), { sshConfig, ...more });
    try {
      return await s.agent.request(agent.hostInfo, {});
    } finally {
      s.close();
    }
  };

  test('a host certificate from a CA known_hosts trusts (@cert-authority) is accepted with no prompt; a revoked host key or CA is refused', async () => {
    const kh = join(dir, 'known_hosts.ca');
    const cfg = join(dir, 'ssh_config.ca');
    writeFileSync(cfg, `Host h1.lab\n  HostName 127.0.0.1\n  Port ${port}\n  User root\n  HostKeyAlias h1.lab\n  IdentityFile ${join(dir, 'client')}\n  UserKnownHostsFile ${kh}\n  StrictHostKeyChecking yes\n`);
    writeFileSync(kh, `@cert-authority [*.lab]:* ${pubOf(join(dir, 'ca'))}\n`);
    assert.equal((await hostInfo('h1.lab', cfg)).host, 'h1');
    assert.equal(readFileSync(kh, 'utf8').split('\n').filter(Boolean).length, 1, 'nothing remembered: the CA vouches each time');
    // a CA trusted for other names does not vouch for this one
    writeFileSync(kh, `@cert-authority [*.example]:* ${pubOf(join(dir, 'ca'))}\n`);
    await assert.rejects(hostInfo('h1.lab', cfg), (e: unknown) => e instanceof HostKeyError && e.kind === 'unknown');
    // @revoked wins over the certificate, for the host key and for the CA
    writeFileSync(kh, `@cert-authority [*.lab]:* ${pubOf(join(dir, 'ca'))}\n@revoked * ${hostPub.split(' ').slice(0, 2).join(' ')}\n`);
    await assert.rejects(hostInfo('h1.lab', cfg), (e: unknown) => e instanceof HostKeyError && e.kind === 'revoked');
    writeFileSync(kh, `@cert-authority [*.lab]:* ${pubOf(join(dir, 'ca'))}\n@revoked * ${pubOf(join(dir, 'ca'))}\n`);
    await assert.rejects(hostInfo('h1.lab', cfg), (e: unknown) => e instanceof HostKeyError && e.kind === 'revoked' && /CA SHA256:\S+ is marked @revoked/.test(e.message));
  });

  test('an Included config with %-tokens, and a two-hop ProxyJump chain (an alias, then user@host:port); a failing target closes the hops', async () => {
    execFileSync('cp', [join(dir, 'client'), join(dir, 'id_root')]);
    mkdirSync(join(dir, 'conf.d'), { recursive: true });
    // (OpenSSH takes each option's first value: the particular blocks come first; the last hop is
    // named localhost, as OpenSSH refuses a last hop spelled as the target is)
    writeFileSync(join(dir, 'conf.d', 'fleet.conf'), `Host h1.far\n  ProxyJump j1,root@localhost:${port}\nHost h1.none\n  Port 1\n  ProxyJump j1\nHost j1 h1.inc h1.far h1.none localhost\n  HostName 127.0.0.1\n  Port ${port}\n  User root\n  IdentityFile ${dir}/id_%r\n  IdentitiesOnly yes\n  UserKnownHostsFile ${join(dir, 'known_hosts')}\n  StrictHostKeyChecking yes\n`);
    const cfg = join(dir, 'ssh_config.inc');
    writeFileSync(cfg, `Include ${join(dir, 'conf.d')}/*.conf\n`);
    assert.equal((await hostInfo('h1.inc', cfg)).host, 'h1');
    const established = () => execFileSync('ss', ['-tnH', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' }).split('\n').filter(Boolean).length;
    const base = established();
    const s = await openAgentSession('h1.far', agentCmd(), { sshConfig: cfg });
    try {
      assert.equal((await s.agent.request(agent.hostInfo, {})).host, 'h1');
      assert.equal(s.target.proxyJump.length, 2);
      assert.equal(established() - base, 3, 'two hops and the target, each its own SSH connection');
    } finally {
      s.close();
    }
    await assert.rejects(openAgentSession('h1.none', agentCmd(), { sshConfig: cfg }), /ECONNREFUSED|Connection refused|open failed|administratively/i);
    for (let i = 0; i < 40 && established() > base; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(established(), base, 'the jump host connection is closed with the failed target');
  });

  test('an encrypted key: its passphrase is asked for, and without it the error says which key is locked', async () => {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'open sesame', '-f', join(dir, 'locked')]);
    writeFileSync(join(dir, 'authorized_keys'), `${readFileSync(join(dir, 'authorized_keys'), 'utf8')}${pubOf(join(dir, 'locked'))}\n`);
    const cfg = join(dir, 'ssh_config.locked');
    writeFileSync(cfg, `Host h1\n  HostName 127.0.0.1\n  Port ${port}\n  User root\n  IdentityFile ${join(dir, 'locked')}\n  IdentitiesOnly yes\n  IdentityAgent none\n  UserKnownHostsFile ${join(dir, 'known_hosts')}\n  StrictHostKeyChecking yes\n`);
    const asked: string[] = [];
    assert.equal((await hostInfo('h1', cfg, { askPassphrase: async (f) => (asked.push(f), 'open sesame') })).host, 'h1');
    assert.deepEqual(asked, [join(dir, 'locked')]);
    await assert.rejects(hostInfo('h1', cfg, { askPassphrase: async () => null }), new RegExp(`${join(dir, 'locked')}: encrypted, and no passphrase was given`));
  });

  test('accept-new trusts and remembers an unknown key without asking; a host known by another key type says so; Match exec runs only from the config the console was started with', async () => {
    const kh = join(dir, 'known_hosts.new');
    writeFileSync(kh, '');
    assert.equal((await hostInfo('h1', config('new', 'accept-new', kh), { decideUnknown: async () => assert.fail('accept-new does not ask') })).host, 'h1');
    assert.match(readFileSync(kh, 'utf8'), /^\|1\|/);
    // known by an ECDSA key only: not "unknown" alone, but which type it is known by
    execFileSync('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', join(dir, 'other_ecdsa')]);
    writeFileSync(kh, `[127.0.0.1]:${port} ${pubOf(join(dir, 'other_ecdsa'))}\n`);
    await assert.rejects(hostInfo('h1', config('type', 'yes', kh)), /knows h1 by another type of key \(ecdsa-sha2-nistp256\), not ssh-ed25519/);
    const cfg = join(dir, 'ssh_config.exec');
    writeFileSync(cfg, `Match exec "touch ${join(dir, 'ran')}"\n  User root\n${readFileSync(config('x', 'yes', join(dir, 'known_hosts')), 'utf8')}`);
    await assert.rejects(hostInfo('h1', cfg, { trustedConfig: false }), /Match exec runs a command/);
    assert.equal(existsSync(join(dir, 'ran')), false, 'the command did not run');
  });
});
