// SSH for the lab: one client key, a host key and a real OpenSSH sshd per host (inside the
// host's namespace, on its management address), and the client files that pin every host key.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { hostLayout, type LabPaths, type LabSpec } from './fleet.js';
import { cmdline, LabError, pidAlive, readPid, run, sleep } from './sys.js';

export const SSHD = '/usr/sbin/sshd';

/** Writes text (mode 0600 by default) and says whether the content changed. */
function writeIfChanged(file: string, text: string, mode = 0o600): boolean {
  mkdirSync(dirname(file), { recursive: true });
  if (existsSync(file) && readFileSync(file, 'utf8') === text) return false;
  writeFileSync(file, text, { mode });
  return true;
}

/** An ed25519 key pair at file (and file.pub); an existing key is kept. */
async function ensureKey(file: string, comment: string): Promise<string> {
  if (!existsSync(file) || !existsSync(`${file}.pub`)) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { timeoutMs: 10_000 }).catch(async () => {
      // A half-written pair from an interrupted run: start over.
      await run('rm', ['-f', file, `${file}.pub`]);
      return run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { timeoutMs: 10_000 });
    });
  }
  return readFileSync(`${file}.pub`, 'utf8').trim();
}

/** "type base64" of a public key line, without its comment. */
function keyBody(pub: string): string {
  return pub.split(/\s+/).slice(0, 2).join(' ');
}

function sshdConfig(address: string, paths: LabPaths, host: ReturnType<LabPaths['host']>): string {
  return [
    '# Written by lab up: one lab host, inside its network namespace.',
    `ListenAddress ${address}:22`,
    `HostKey ${host.hostKey}`,
    `PidFile ${host.sshdPid}`,
    `AuthorizedKeysFile ${paths.authorizedKeys}`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    // The lab directory may sit under /tmp or /var/tmp (world-writable), which StrictModes refuses.
    'StrictModes no',
    'PrintMotd no',
    'X11Forwarding no',
    'Subsystem sftp /usr/lib/openssh/sftp-server',
    '',
  ].join('\n');
}

/** True if pid is an sshd started with this config file. */
function isOurSshd(pid: number | undefined, config: string): pid is number {
  return pid !== undefined && pidAlive(pid) && cmdline(pid).includes(config);
}

/** The sshd serving a host, if one is running. */
export function runningSshd(host: ReturnType<LabPaths['host']>): number | undefined {
  const pid = readPid(host.sshdPid);
  return isOurSshd(pid, host.sshdConfig) ? pid : undefined;
}

/**
 * Host key, sshd_config and a running sshd for host i. A running sshd is kept (and told to reread
 * a changed config); otherwise one is started in the namespace and its pid file awaited.
 */
async function ensureSshd(spec: LabSpec, paths: LabPaths, i: number): Promise<{ name: string; address: string; pub: string }> {
  const h = hostLayout(spec, i);
  const host = paths.host(h.name);
  const pub = await ensureKey(host.hostKey, `lab-${h.name}`);
  const changed = writeIfChanged(host.sshdConfig, sshdConfig(h.address, paths, host), 0o644);
  const pid = runningSshd(host);
  if (pid !== undefined) {
    if (changed) process.kill(pid, 'SIGHUP');
    return { name: h.name, address: h.address, pub };
  }
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege-separation directory
  await run(SSHD, ['-t', '-f', host.sshdConfig]);
  writeFileSync(host.sshdPid, '');
  // sshd listens, daemonizes, then writes its pid file.
  // in the host's network namespace only (not `ip netns exec`'s mount namespace of its own): an
  // agent it starts then names the namespaces it makes (an OVS-DPDK generation's) where every
  // process sees them, as on a real host
  await run('nsenter', [`--net=/run/netns/${h.netns}`, SSHD, '-f', host.sshdConfig, '-E', host.sshdLog]);
  for (let waited = 0; waited < 5000; waited += 50) {
    if (isOurSshd(readPid(host.sshdPid), host.sshdConfig)) return { name: h.name, address: h.address, pub };
    await sleep(50);
  }
  throw new LabError(`sshd for ${h.name} did not start; see ${host.sshdLog}`);
}

/** Client key, every host's sshd, and the client files pinning their keys. */
export async function sshUp(spec: LabSpec, paths: LabPaths): Promise<void> {
  mkdirSync(paths.client, { recursive: true, mode: 0o700 });
  const clientPub = await ensureKey(paths.identity, 'hitless-lab-client');
  writeIfChanged(paths.authorizedKeys, `${clientPub}\n`);
  const hosts = [];
  for (let i = 1; i <= spec.hosts; i++) hosts.push(await ensureSshd(spec, paths, i));
  writeIfChanged(paths.knownHosts, hosts.map((h) => `${h.address},${h.name} ${keyBody(h.pub)}\n`).join(''));
  const common = [
    '  User root',
    `  IdentityFile ${paths.identity}`,
    '  IdentitiesOnly yes',
    `  UserKnownHostsFile ${paths.knownHosts}`,
    '  GlobalKnownHostsFile /dev/null',
    '  StrictHostKeyChecking yes',
    '  UpdateHostKeys no',
    '  ConnectTimeout 5',
  ];
  const blocks = hosts.map((h) => [`Host ${h.name} ${h.address}`, `  HostName ${h.address}`, ...common, ''].join('\n'));
  writeIfChanged(paths.sshConfig, `# Written by lab up.\n${blocks.join('\n')}`);
}
