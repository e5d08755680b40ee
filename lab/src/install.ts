// What each lab host has installed: two releases of the datapath built from native/ with distinct
// version stamps, signed into dist/ and installed from there as an operator does (release.ts),
// the keeper, hold and agent from the host package in dist/ (unpacked into the host's own pkg/
// by the same command the console's Install agent runs on a lab host), the probe, the agent
// wrapper and the agent's config.
import { APPROVAL_NAMESPACE } from '../../protocol/approval.js';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installCommand } from '../../app/src/core/agentInstall.js';
import { listReleases } from '../../agent/src/host/config.js';
import { installReleaseTar, ReleaseRefused } from '../../agent/src/host/release.js';
import { DIST } from '../../scripts/package.js';
import { AgentConfig, type ReleaseManifest } from '../../protocol/files.js';
import { hostKind, hostVms, type LabPaths, type LabSpec, UPLINKS } from './fleet.js';
import { LabError, run, tryRun } from './sys.js';

export const RELEASES = ['1.0.0', '1.1.0'] as const;
/** The L2 stage's state layout in each: 1.0.0 ships layout 1, so moving a host to 1.1.0 by
 * swapping its stage in place converts the FDB (lib/swap's migrate path). */
const FWD_LAYOUT: Record<(typeof RELEASES)[number], number> = { '1.0.0': 1, '1.1.0': 2 };
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export const TARGETS = {
  'hitless-dp': 'src/dp/hitless-dp',
  'hitless-fwd-l2.so': 'src/fwd/hitless-fwd-l2.so',
  'hitless-keeper': 'src/keeper/hitless-keeper',
  'hitless-hold': 'src/hold/hitless-hold',
  'hitless-probe': 'src/probe/hitless-probe',
  'release.json': 'release.json',
} as const;

export function buildDir(buildRoot: string, release: string): string {
  return join(buildRoot, `build-${release}`);
}

async function dpVersion(dir: string): Promise<string> {
  return (await tryRun(join(dir, TARGETS['hitless-dp']), ['--version'])).stdout.trim();
}

/**
 * Builds one release into its own meson tree under buildRoot, reusing the tree when present
 * (ninja then rebuilds only what changed in native/). Checks the stamp the binary prints.
 */
async function buildRelease(buildRoot: string, release: (typeof RELEASES)[number]): Promise<void> {
  const dir = buildDir(buildRoot, release);
  const opts = [`-Drelease=${release}`, `-Dfwd_layout=${FWD_LAYOUT[release]}`];
  // the cache is one source tree's: another checkout (a second clone on the machine) sets up its own
  const source = join(dir, '.hitless-source');
  if (existsSync(dir) && (!existsSync(source) || readFileSync(source, 'utf8') !== repoRoot)) rmSync(dir, { recursive: true, force: true });
  if (!existsSync(join(dir, 'build.ninja'))) {
    rmSync(dir, { recursive: true, force: true }); // an interrupted setup leaves a tree meson refuses
    process.stderr.write(`lab: configuring release ${release} in ${dir}\n`);
    await run('meson', ['setup', dir, join(repoRoot, 'native'), ...opts], { timeoutMs: 300_000 });
    writeFileSync(source, repoRoot);
  }
  const ninja = () => run('nice', ['-n', '10', 'ninja', '-j', '2', '-C', dir, ...Object.values(TARGETS)], { timeoutMs: 900_000 });
  await ninja();
  const manifestLayout = (): number => (JSON.parse(readFileSync(join(dir, 'release.json'), 'utf8')) as { fwd: { layout: number } }).fwd.layout;
  if (!(await dpVersion(dir)).startsWith(`hitless-dp ${release} `) || manifestLayout() !== FWD_LAYOUT[release]) {
    await run('meson', ['configure', dir, ...opts]);
    await ninja();
    const v = await dpVersion(dir);
    if (!v.startsWith(`hitless-dp ${release} `)) throw new LabError(`${dir}: hitless-dp reports "${v}", expected ${release}`);
  }
}

export async function buildReleases(buildRoot: string): Promise<void> {
  mkdirSync(buildRoot, { recursive: true });
  for (const r of RELEASES) await buildRelease(buildRoot, r);
}

/**
 * Copies src to dst unless dst already has the same bytes. A changed file is replaced by rename,
 * so a binary a running generation was started from is never written in place.
 */
function install(src: string, dst: string, mode: number): void {
  const data = readFileSync(src);
  if (existsSync(dst) && readFileSync(dst).equals(data)) return;
  mkdirSync(dirname(dst), { recursive: true });
  writeFileSync(`${dst}.tmp`, data, { mode });
  renameSync(`${dst}.tmp`, dst);
}

/** dst a link to target (replacing a file or another link by rename). */
function installLink(target: string, dst: string): void {
  try {
    if (readlinkSync(dst) === target) return;
  } catch {
    /* not a link yet */
  }
  mkdirSync(dirname(dst), { recursive: true });
  rmSync(`${dst}.tmp`, { force: true });
  symlinkSync(target, `${dst}.tmp`);
  renameSync(`${dst}.tmp`, dst);
}

function installText(dst: string, text: string, mode: number): void {
  if (existsSync(dst) && readFileSync(dst, 'utf8') === text) return;
  mkdirSync(dirname(dst), { recursive: true });
  writeFileSync(`${dst}.tmp`, text, { mode });
  renameSync(`${dst}.tmp`, dst);
}

/** The agent as a host runs it: the host package's executable (in the host's pkg/, where its
 * Install agent puts it), on this host's root. */
function agentWrapper(root: string): string {
  return `#!/bin/sh\n# Written by lab up: this lab host's agent (the host package's, in ${packageDir(root)}), on this host's root.\nexec ${join(packageDir(root), 'usr/bin/hitless-agent')} --root ${root} "$@"\n`;
}

/** Where a lab host's host package is unpacked: the lab's hosts share one filesystem, so each
 * has its own instead of /usr (a link to the current unpacked copy). */
export function packageDir(root: string): string {
  return join(root, 'pkg');
}

/** The host package make package wrote (dist/hitless-host_<v>_amd64.deb): exactly one. */
export function hostPackage(): string {
  const debs = existsSync(DIST) ? readdirSync(DIST).filter((f) => /^hitless-host_.*_amd64\.deb$/.test(f)) : [];
  if (debs.length !== 1) throw new LabError(`${DIST}: ${debs.length ? `${debs.length} host packages` : 'no host package'}; run make package`);
  return join(DIST, debs[0]!);
}

/** The newest source file the agent executable is built from (tests left out). */
function newestAgentSource(): { path: string; mtimeMs: number } {
  let best = { path: '', mtimeMs: 0 };
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) {
        const m = statSync(p).mtimeMs;
        if (m > best.mtimeMs) best = { path: p, mtimeMs: m };
      }
    }
  };
  for (const d of ['agent/src', 'protocol']) walk(join(repoRoot, d));
  return best;
}

/**
 * The host package installed on a lab host as the console's Install agent does it there
 * (agentInstall.ts installCommand: dpkg -x into a new directory, the pkg link renamed over),
 * again only when the package changed. A package older than the agent's sources is refused: a
 * lab would otherwise run an agent without the change being tested.
 */
async function installHostPackage(root: string): Promise<void> {
  const deb = hostPackage();
  const src = newestAgentSource();
  if (statSync(deb).mtimeMs < src.mtimeMs) throw new LabError(`${deb} is older than ${relative(repoRoot, src.path)}: run make package`);
  const stamp = join(root, 'etc', 'host-package');
  const from = `${deb} ${statSync(deb).mtimeMs}\n`;
  if (existsSync(stamp) && existsSync(join(packageDir(root), 'usr/bin/hitless-agent')) && readFileSync(stamp, 'utf8') === from) return;
  mkdirSync(dirname(stamp), { recursive: true });
  await run('sh', ['-c', installCommand({ method: 'unpack', dir: packageDir(root) }, deb, true)]);
  writeFileSync(stamp, from);
}

/** Debian's DPDK build of ovs-vswitchd (openvswitch-switch-dpdk): the lab's OVS-DPDK releases. */
export const OVS_VSWITCHD = '/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk';

/** An OVS-DPDK release: bin/ovs-vswitchd (a link to Debian's binary: both lab releases run the
 * same one; a real upgrade changes the binary, the mechanism is the same) and its manifest. */
async function installOvsRelease(root: string, r: string): Promise<void> {
  const bin = join(root, 'releases', r, 'bin', 'ovs-vswitchd');
  mkdirSync(dirname(bin), { recursive: true });
  if (!existsSync(bin)) symlinkSync(OVS_VSWITCHD, bin);
  const version = /\(Open vSwitch\) (\S+)/.exec((await tryRun(OVS_VSWITCHD, ['--version'])).stdout)?.[1];
  const dpdk = /DPDK (\S+)/.exec((await tryRun(OVS_VSWITCHD, ['--version'])).stdout)?.[1];
  if (!version || !dpdk) throw new LabError(`${OVS_VSWITCHD} --version: no OVS and DPDK version (is openvswitch-switch-dpdk installed?)`);
  const m: ReleaseManifest = { release: r, kind: 'ovs-dpdk', ovs: version, dpdk, modes: ['handoff'] };
  installText(join(root, 'releases', r, 'release.json'), `${JSON.stringify(m)}\n`, 0o644);
}

/** Host i's root: releases/<r>/ (bin/ and release.json, of the host's datapath kind), pkg/ (the
 * host package), bin/ (keeper, hold and agent: links into pkg/ as the package's
 * /var/lib/hitless/bin has; the probe, a lab tool, from the newest build), etc/agent.json. */
export async function installHost(spec: LabSpec, paths: LabPaths, buildRoot: string, i: number, tars: Record<string, string>): Promise<void> {
  const name = `h${i}`;
  const root = paths.host(name).root;
  const signers = join(root, 'etc', 'release-signers');
  installText(signers, readFileSync(join(DIST, 'release-signers'), 'utf8'), 0o644);
  for (const r of RELEASES) {
    if (hostKind(spec, i) === 'ovs-dpdk') await installOvsRelease(root, r);
    else await installSigned(root, r, tars[r]!, signers);
  }
  await installHostPackage(root);
  // the keeper and the hold port's process are per host, not per generation: the host package's
  for (const f of ['hitless-keeper', 'hitless-hold'] as const) installLink(join(packageDir(root), 'usr/lib/hitless', f), join(root, 'bin', f));
  install(join(buildDir(buildRoot, RELEASES[RELEASES.length - 1]!), TARGETS['hitless-probe']), join(root, 'bin', 'hitless-probe'), 0o755);
  installText(join(root, 'bin', 'hitless-agent'), agentWrapper(root), 0o755);
  // a hitless-dp host runs signed releases only; the lab's OVS-DPDK releases are links to
  // Debian's ovs-vswitchd, not signed tars
  const config = AgentConfig.parse({
    host: name,
    vms: hostVms(i, spec.vms),
    uplinks: [...UPLINKS],
    probe_ctl: join(root, 'run', 'probe.sock'),
    release_signers: signers,
    unsigned_releases: hostKind(spec, i) === 'ovs-dpdk',
  });
  installText(join(root, 'etc', 'agent.json'), `${JSON.stringify(config, null, 2)}\n`, 0o644);
  // the lab operator (the client key the fleet logs in with) is the one approver: the agent
  // acts on no approval it has not signed (approvers.ts)
  const operator = readFileSync(`${paths.identity}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  installText(join(root, 'etc', 'approvers'), `# who may approve on ${name} (allowed_signers format; see hitless-agent's approvers.ts)\nlab-operator namespaces="${APPROVAL_NAMESPACE}" ${operator} lab operator\n`, 0o644);
}

/** A datapath release as an operator installs one: its signed tar from dist/, verified and
 * unpacked by the agent's own install (release.ts). A release rebuilt since its last install
 * replaces the installed one (a generation running from it keeps its open files). */
async function installSigned(root: string, r: string, tar: string, signers: string): Promise<void> {
  mkdirSync(join(root, 'releases'), { recursive: true });
  try {
    await installReleaseTar(tar, root, signers);
  } catch (e) {
    if (!(e instanceof ReleaseRefused && /is installed already/.test(e.message))) throw new LabError(`${tar}: ${(e as Error).message}`);
    rmSync(join(root, 'releases', r), { recursive: true, force: true });
    await installReleaseTar(tar, root, signers);
  }
}

/** The releases a host root holds with a runnable datapath (as its agent judges them). */
export function installedReleases(root: string): string[] {
  return listReleases(root).filter((r) => !r.unknown_kind).map((r) => r.version);
}
