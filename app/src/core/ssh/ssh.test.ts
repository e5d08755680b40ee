// The console's SSH layer against a real OpenSSH sshd on loopback: the agent runs over an exec
// channel; known_hosts decides (match, changed -> refused, unknown -> per StrictHostKeyChecking).
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
    writeFileSync(join(dir, 'authorized_keys'), `${keygen(join(dir, 'client'))}\n`);
    writeFileSync(join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${hostPub.split(' ').slice(0, 2).join(' ')}\n`);
    writeFileSync(
      join(dir, 'sshd_config'),
      [`Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host_ed25519')}`, `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
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
});
