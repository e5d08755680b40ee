// lab up / status / down: the fleet of lab hosts as a whole. Up converges (what is there and
// right is kept, host keys included); a lab left half-built or built to another size is torn
// down first. Down works from names alone, so it also clears up after a crash.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fleet } from '../../protocol/files.js';
import { bridgeName, hostLayout, hostVms, isGuest, labPaths, LabState, type LabSpec } from './fleet.js';
import { guestsUnavailable } from './guest.js';
import { Ovs, ovsAvailable } from '../../agent/src/native/ovs.js';
import { packReleases, signingKey } from '../../scripts/package.js';
import { buildReleases, installedReleases, installHost, packageDir } from './install.js';
import { labResources, networkDown, networkUp } from './net.js';
import { runningSshd, SSHD, sshUp } from './ssh.js';
import { DEFAULT_PPS, filePrefixOf, removeDpdkDirs, runStatus, startGuests, startHost, startProbe, type GuestOf, type RunStatus } from './run.js';
import { cmdline, killPids, LabError, netnsList, pidAlive, readPid, tryRun, type RunResult } from './sys.js';

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
  /** frames/s of each probe flow (default 1000); a probe already running keeps its rate */
  pps?: number;
}

export async function up({ dir, buildDir, spec, pps = DEFAULT_PPS }: UpOptions): Promise<{ fleet: Fleet; hosts: HostStatus[] }> {
  await preflight();
  const prev = existsSync(dir) ? readState(dir) : undefined;
  if (existsSync(dir) && !isLabDir(dir)) throw new LabError(`${dir} exists and is not a lab directory; choose another --dir`);
  if (spec.vm_kind !== 'probe') {
    if (spec.vms < 2) throw new LabError(`--vm-kind ${spec.vm_kind} needs --vms 2 or more: a probe VM measures the guests`);
    const why = guestsUnavailable();
    if (why) throw new LabError(`--vm-kind ${spec.vm_kind}: ${why}`);
  }
  if (spec.datapath !== 'hitless') {
    const why = ovsAvailable();
    if (why) throw new LabError(`--datapath ${spec.datapath}: ${why}`);
  }
  const same = prev?.state === 'up' && (['prefix', 'subnet', 'hosts', 'vms', 'vm_kind', 'datapath'] as const).every((k) => prev[k] === spec[k]);
  if (!same) {
    if (prev) log(prev.state === 'up' ? `replacing the lab in ${dir} (different size or names)` : `clearing a half-built lab in ${dir}`);
    if (prev && prev.prefix !== spec.prefix) await down({ dir, prefix: prev.prefix, quiet: true });
    await down({ dir, prefix: spec.prefix, quiet: true });
  }
  log(`building releases in ${buildDir}`);
  await buildReleases(buildDir);
  // signed into dist/ as make package does, and installed from there
  const tars = await packReleases(buildDir, signingKey().key);

  const paths = labPaths(dir);
  mkdirSync(dir, { recursive: true });
  writeState(dir, spec, 'building');
  log(`network: bridge ${bridgeName(spec.prefix)}, ${spec.hosts} namespaces`);
  await networkUp(spec);
  log('sshd per host');
  await sshUp(spec, paths);
  for (let i = 1; i <= spec.hosts; i++) await installHost(spec, paths, buildDir, i, tars);

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
      return { name: h.name, address: h.address, root, agent: join(root, 'bin/hitless-agent'), package_dir: packageDir(root), netns: h.netns, vms: hostVms(k + 1, spec.vms) };
    }),
  });
  writeFileSync(paths.fleet, `${JSON.stringify(fleet, null, 2)}\n`);

  // Every host running: its datapath through its agent, then its probe (which attaches to the
  // keeper's sockets and sends to the next host's VMs, so every host's datapath comes first).
  log(`host/start ${fleet.hosts.map((h) => h.name).join(', ')}`);
  await Promise.all(fleet.hosts.map((h) => startHost(h)));
  const guest = guestOf(spec);
  if (spec.vm_kind !== 'probe') {
    log(`QEMU guests: ${fleet.hosts.flatMap((h) => h.vms.filter((v) => guest(v.name)).map((v) => v.name)).join(', ')}`);
    for (const h of fleet.hosts) await startGuests(h, guest); // one host at a time: TCG boots are CPU-bound
  }
  log(`probes at ${pps} frames/s per flow`);
  await Promise.all(fleet.hosts.map((_, k) => startProbe(fleet.hosts, k, pps, guest)));

  const hosts = await status(dir);
  const bad = hosts.filter((h) => !healthy(h));
  if (bad.length > 0) throw new LabError(`hosts not healthy after up: ${bad.map((h) => `${h.name} (${unhealthy(h).join('; ')})`).join(', ')} (see lab status)`);
  writeState(dir, spec, 'up');
  return { fleet, hosts };
}

export interface HostStatus extends RunStatus {
  name: string;
  address: string;
  netns: boolean;
  sshd: number | null;
  ssh: boolean;
  /** Why `ssh HOST true` failed: its last stderr line, or the timeout. */
  ssh_error: string | null;
  releases: string[];
}

const SSH_CHECK_MS = 20_000;

function sshError(r: RunResult): string {
  return r.stderr.trim().split('\n').pop()?.trim() || `exit ${r.code}`;
}

/** What is wrong with a lab host (empty: healthy). */
export function unhealthy(h: HostStatus): string[] {
  return [
    ...(h.netns ? [] : ['no network namespace']),
    ...(h.sshd !== null ? [] : ['no sshd']),
    ...(h.ssh ? [] : [`ssh does not answer: ${h.ssh_error ?? 'unknown'}`]),
    ...(h.releases.length > 0 ? [] : ['no release installed']),
    ...(h.agent_error ? [`agent: ${h.agent_error}`] : h.active !== null ? [] : ['no active generation']),
    ...(h.keeper || h.agent_error ? [] : ['keeper not running']),
    ...(h.probe !== null ? [] : ['no probe']),
    ...h.guests.filter((g) => g.pid === null).map((g) => `guest ${g.vm} not running`),
  ];
}

export function healthy(h: HostStatus): boolean {
  return unhealthy(h).length === 0;
}

/** The lab's guest VMs by name: VM k of host i is h<i>-v<k>. */
function guestOf(spec: Pick<LabSpec, 'vms' | 'vm_kind'>): GuestOf {
  return (vm) => {
    const k = Number(/-v([0-9]+)$/.exec(vm)?.[1]);
    return Number.isInteger(k) && isGuest(spec, k);
  };
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
  const guest = guestOf(readState(dir) ?? { vms: 0, vm_kind: 'probe' });
  return Promise.all(
    fleet.hosts.map(async (h) => {
      const pid = runningSshd(paths.host(h.name));
      const [ssh, run] = await Promise.all([
        // generous: on a loaded 2-core machine the handshake competes with busy-polling processes
        tryRun('ssh', ['-F', fleet.ssh_config, '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', h.name, 'true'], { timeoutMs: SSH_CHECK_MS }),
        runStatus(h, guest),
      ]);
      return {
        name: h.name,
        address: h.address,
        netns: namespaces.includes(h.netns),
        sshd: pid !== undefined && inNamespace(pid, h.netns) ? pid : null,
        ssh: ssh.code === 0,
        ssh_error: ssh.code === 0 ? null : sshError(ssh),
        releases: installedReleases(h.root),
        ...run,
      };
    }),
  );
}

export function statusTable(hosts: HostStatus[]): string {
  const rows = [['HOST', 'ADDRESS', 'NETNS', 'SSHD', 'SSH', 'RELEASES', 'ACTIVE', 'PROBE', 'GUESTS', 'RECEIVED']];
  for (const h of hosts) {
    const active = h.agent_error !== null ? 'AGENT FAIL' : `${h.active ?? 'NONE'}${h.kind === 'ovs-dpdk' ? ' ovs-dpdk' : ''}${h.keeper ? '' : ' (no keeper)'}`;
    const probe = h.probe === null ? 'DEAD' : `pid ${h.probe}${h.probe_state && h.probe_state !== 'running' ? ` ${h.probe_state}` : ''}`;
    const rx = h.flows.map((f) => `${f.dst}<-${f.src} ${f.received}`).join(', ') + (h.link_down ? `; ${h.link_down} link-down` : '');
    const guests = h.guests.map((g) => `${g.vm} ${g.pid !== null ? `pid ${g.pid}` : 'DEAD'}`).join(', ');
    rows.push([h.name, h.address, h.netns ? 'yes' : 'NO', h.sshd !== null ? `pid ${h.sshd}` : 'DEAD', h.ssh ? 'ok' : 'FAIL', h.releases.join(',') || 'NONE', active, probe, guests || '-', rx || '-']);
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
  const hostsDir = join(dir, 'hosts');
  const prefixes: string[] = [];
  const removed = await networkDown(p, (pid) => {
    const fp = filePrefixOf(pid);
    if (fp) prefixes.push(fp);
  });
  if (existsSync(hostsDir)) {
    // OVS-DPDK generations run in namespaces of their own: stopped (with their hugepages and
    // namespaces) once nothing of the host runs any more (no agent left to restore them)
    for (const n of readdirSync(hostsDir)) {
      const run = join(labPaths(dir).host(n).root, 'run');
      if (!existsSync(run)) continue;
      for (const d of readdirSync(run)) if (d.startsWith('gen-') && existsSync(join(run, d, 'ovs.json'))) Ovs.at(join(run, d)).stopSync();
    }
  }
  // A process outside any namespace we know (its namespace was deleted by hand) still has a pid
  // file: sshd, the probe, the keeper, the generations.
  if (existsSync(hostsDir)) {
    const stray = readdirSync(hostsDir).flatMap((n) => strayPids(labPaths(dir).host(n)));
    for (const pid of stray) {
      const fp = filePrefixOf(pid);
      if (fp) prefixes.push(fp);
    }
    await killPids(stray);
    removed.killed += stray.length;
  }
  const dpdkDirs = removeDpdkDirs(prefixes);
  let dirNote = 'no directory';
  if (existsSync(dir)) {
    if (isLabDir(dir)) {
      rmSync(dir, { recursive: true, force: true });
      dirNote = `removed ${dir}`;
    } else dirNote = `left ${dir} (not a lab directory)`;
  }
  const left = await labResources(p);
  if (left.namespaces.length + left.links.length > 0) throw new LabError(`still present: ${[...left.namespaces, ...left.links].join(', ')}`);
  if (!quiet) log(`down: ${removed.namespaces} namespaces, ${removed.links} links, ${removed.killed} processes, ${dpdkDirs} DPDK run dirs; ${dirNote}`);
}

/** Live processes a host's pid files name that belong to that host (their command line says so). */
function strayPids(host: ReturnType<ReturnType<typeof labPaths>['host']>): number[] {
  const files = [join(host.root, 'run', 'probe.pid'), join(host.root, 'run', 'keeper', 'keeper.pid')];
  const run = join(host.root, 'run');
  if (existsSync(run))
    for (const d of readdirSync(run)) {
      if (d.startsWith('gen-')) files.push(join(run, d, 'dp.pid'));
      if (d.startsWith('guest-') && d.endsWith('.pid')) files.push(join(run, d)); // QEMU runs outside the namespace
    }
  const pids = files.map(readPid).filter((x): x is number => x !== undefined && pidAlive(x) && cmdline(x).includes(host.root));
  const sshd = runningSshd(host);
  return sshd !== undefined ? [sshd, ...pids] : pids;
}
