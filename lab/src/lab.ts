// lab up / status / down: the fleet of lab hosts as a whole. Up converges (what is there and
// right is kept, host keys included); a lab left half-built or built to another size is torn
// down first. Down works from names alone, so it also clears up after a crash.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bridgeName, Fleet, hostLayout, hostVms, labPaths, LabState, type LabSpec } from './fleet.js';
import { buildReleases, installedReleases, installHost } from './install.js';
import { labResources, networkDown, networkUp } from './net.js';
import { runningSshd, SSHD, sshUp } from './ssh.js';
import { killPids, LabError, netnsList, tryRun } from './sys.js';

export const DEFAULT_DIR = '/var/tmp/hitless-lab';
export const DEFAULT_BUILD_DIR = '/var/tmp/hitless-lab-build';
export const DEFAULT_PREFIX = 'hl';

function log(msg: string): void {
  process.stderr.write(`lab: ${msg}\n`);
}

async function preflight(): Promise<void> {
  if (process.getuid?.() !== 0) throw new LabError('must run as root (network namespaces, sshd on port 22)');
  if (!existsSync(SSHD)) throw new LabError(`${SSHD} not found: run make setup (it installs openssh-server)`);
  for (const tool of ['ip', 'ssh', 'ssh-keygen', 'meson', 'ninja']) {
    if ((await tryRun('sh', ['-c', `command -v ${tool}`])).code !== 0) throw new LabError(`${tool} not found: run make setup`);
  }
}

function readState(dir: string): LabState | undefined {
  const file = labPaths(dir).state;
  try {
    return LabState.parse(JSON.parse(readFileSync(file, 'utf8')));
  } catch {
    return undefined; // missing or unreadable: treated as no finished lab
  }
}

function writeState(dir: string, spec: LabSpec, state: LabState['state']): void {
  writeFileSync(labPaths(dir).state, `${JSON.stringify({ ...spec, state }, null, 2)}\n`);
}

/** Only a directory lab up made (or an empty one) is ever removed. */
function isLabDir(dir: string): boolean {
  if (!statSync(dir).isDirectory()) return false;
  return existsSync(labPaths(dir).state) || existsSync(labPaths(dir).fleet) || readdirSync(dir).length === 0;
}

export interface UpOptions {
  dir: string;
  buildDir: string;
  spec: LabSpec;
}

export async function up({ dir, buildDir, spec }: UpOptions): Promise<{ fleet: Fleet; hosts: HostStatus[] }> {
  await preflight();
  const prev = existsSync(dir) ? readState(dir) : undefined;
  if (existsSync(dir) && !isLabDir(dir)) throw new LabError(`${dir} exists and is not a lab directory; choose another --dir`);
  const same = prev?.state === 'up' && (['prefix', 'subnet', 'hosts', 'vms'] as const).every((k) => prev[k] === spec[k]);
  if (!same) {
    if (prev) log(prev.state === 'up' ? `replacing the lab in ${dir} (different size or names)` : `clearing a half-built lab in ${dir}`);
    if (prev && prev.prefix !== spec.prefix) await down({ dir, prefix: prev.prefix, quiet: true });
    await down({ dir, prefix: spec.prefix, quiet: true });
  }
  log(`building releases in ${buildDir}`);
  await buildReleases(buildDir);

  const paths = labPaths(dir);
  mkdirSync(dir, { recursive: true });
  writeState(dir, spec, 'building');
  log(`network: bridge ${bridgeName(spec.prefix)}, ${spec.hosts} namespaces`);
  await networkUp(spec);
  log('sshd per host');
  await sshUp(spec, paths);
  for (let i = 1; i <= spec.hosts; i++) installHost(spec, paths, buildDir, i);

  const fleet = Fleet.parse({
    dir,
    prefix: spec.prefix,
    bridge: bridgeName(spec.prefix),
    ssh_config: paths.sshConfig,
    known_hosts: paths.knownHosts,
    identity: paths.identity,
    hosts: Array.from({ length: spec.hosts }, (_, k) => {
      const h = hostLayout(spec, k + 1);
      const root = paths.host(h.name).root;
      return { name: h.name, address: h.address, root, agent: join(root, 'bin/hitless-agent'), netns: h.netns, vms: hostVms(k + 1, spec.vms) };
    }),
  });
  writeFileSync(paths.fleet, `${JSON.stringify(fleet, null, 2)}\n`);

  const hosts = await status(dir);
  const bad = hosts.filter((h) => !healthy(h));
  if (bad.length > 0) throw new LabError(`hosts not healthy after up: ${bad.map((h) => h.name).join(', ')} (see lab status)`);
  writeState(dir, spec, 'up');
  return { fleet, hosts };
}

export interface HostStatus {
  name: string;
  address: string;
  netns: boolean;
  sshd: number | null;
  ssh: boolean;
  releases: string[];
}

export function healthy(h: HostStatus): boolean {
  return h.netns && h.sshd !== null && h.ssh && h.releases.length > 0;
}

/** True if pid lives in the named network namespace. */
function inNamespace(pid: number, ns: string): boolean {
  try {
    return statSync(`/proc/${pid}/ns/net`).ino === statSync(`/run/netns/${ns}`).ino;
  } catch {
    return false;
  }
}

export function readFleet(dir: string): Fleet {
  const file = labPaths(dir).fleet;
  if (!existsSync(file)) throw new LabError(`no lab in ${dir} (no fleet.json): run lab up`);
  return Fleet.parse(JSON.parse(readFileSync(file, 'utf8')));
}

export async function status(dir: string): Promise<HostStatus[]> {
  const fleet = readFleet(dir);
  const paths = labPaths(dir);
  const namespaces = await netnsList();
  return Promise.all(
    fleet.hosts.map(async (h) => {
      const pid = runningSshd(paths.host(h.name));
      const ssh = await tryRun('ssh', ['-F', fleet.ssh_config, '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=3', h.name, 'true'], { timeoutMs: 5000 });
      return {
        name: h.name,
        address: h.address,
        netns: namespaces.includes(h.netns),
        sshd: pid !== undefined && inNamespace(pid, h.netns) ? pid : null,
        ssh: ssh.code === 0,
        releases: installedReleases(h.root),
      };
    }),
  );
}

export function statusTable(hosts: HostStatus[]): string {
  const rows = [['HOST', 'ADDRESS', 'NETNS', 'SSHD', 'SSH', 'RELEASES']];
  for (const h of hosts) {
    rows.push([h.name, h.address, h.netns ? 'yes' : 'NO', h.sshd !== null ? `pid ${h.sshd}` : 'DEAD', h.ssh ? 'ok' : 'FAIL', h.releases.join(',') || 'NONE']);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

export interface DownOptions {
  dir: string;
  /** Names to remove; defaults to the prefix the lab directory records, else DEFAULT_PREFIX. */
  prefix?: string;
  quiet?: boolean;
}

/** Stops and removes everything a lab made; keeps the build cache. Idempotent. */
export async function down({ dir, prefix, quiet }: DownOptions): Promise<void> {
  if (process.getuid?.() !== 0) throw new LabError('must run as root (network namespaces)');
  const state = existsSync(dir) ? readState(dir) : undefined;
  const p = prefix ?? state?.prefix ?? DEFAULT_PREFIX;
  const removed = await networkDown(p);
  // An sshd outside any namespace we know (its namespace was deleted by hand) still has a pid file.
  const hostsDir = join(dir, 'hosts');
  if (existsSync(hostsDir)) {
    const stray = readdirSync(hostsDir).map((n) => runningSshd(labPaths(dir).host(n))).filter((x): x is number => x !== undefined);
    await killPids(stray);
    removed.killed += stray.length;
  }
  let dirNote = 'no directory';
  if (existsSync(dir)) {
    if (isLabDir(dir)) {
      rmSync(dir, { recursive: true, force: true });
      dirNote = `removed ${dir}`;
    } else dirNote = `left ${dir} (not a lab directory)`;
  }
  const left = await labResources(p);
  if (left.namespaces.length + left.links.length > 0) throw new LabError(`still present: ${[...left.namespaces, ...left.links].join(', ')}`);
  if (!quiet) log(`down: ${removed.namespaces} namespaces, ${removed.links} links, ${removed.killed} processes; ${dirNote}`);
}
