// Installing or upgrading the host package (the agent, the keeper) on hosts (DESIGN.md §13), over
// a plain SSH connection of the host's own (the agent may not be there yet): first checks on the
// host (architecture, the packages it depends on such as DPDK, sudo rights, free space), then
// SFTP into a private directory, then dpkg -i (through sudo -n unless the login is root), then
// the new agent's version. Nothing is copied when a check fails; the copy is removed either way.
// Hosts that share one filesystem (the lab) get the package unpacked into a directory of their
// own instead (HostPackageTarget 'unpack'), switched over by renaming a link: same checks, same
// copy, same version check.
// The agent is not on the packet path and every agent process is one SSH session's: a new one
// takes over from the host's journal when the console reconnects, mid-campaign or not.
import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { HostPackageTarget, LibraryPackage } from '../../../protocol/console.js';
import { shellWord } from '../../../protocol/shell.js';
import type { HostConn } from './hostConn.js';
import { fileToSend } from './releaseUpload.js';
import type { ExecResult, HostShell } from './ssh/agentSession.js';

export type LocalPackage = LibraryPackage;

/** A refusal found before anything was copied: the host is left as it was. */
export class InstallRefused extends Error {}

const run = (cmd: string, args: string[]) =>
  new Promise<string>((res, rej) => execFile(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 20 }, (e, out, err) => (e ? rej(new Error(err.trim() || e.message)) : res(out))));

/** A host package on this machine, as its control file says (read with dpkg-deb). */
export async function readLocalPackage(deb: string): Promise<LocalPackage> {
  const file = await fileToSend(deb);
  let text: string;
  try {
    text = await run('dpkg-deb', ['-f', deb, 'Package', 'Version', 'Architecture', 'Depends', 'Installed-Size']);
  } catch (e) {
    throw new Error(`${deb}: not a Debian package (${(e as Error).message.split('\n')[0]})`);
  }
  const f: Record<string, string> = {};
  for (const l of text.split('\n')) {
    const m = /^([\w-]+): (.*)$/.exec(l);
    if (m) f[m[1]!] = m[2]!;
  }
  if (f.Package !== 'hitless-host') throw new Error(`${deb}: package ${f.Package ?? '(none)'}, not hitless-host`);
  return {
    file: basename(deb),
    ...file,
    package: f.Package,
    version: f.Version ?? '',
    architecture: f.Architecture ?? '',
    // the first alternative of each dependency, without its version constraint
    depends: (f.Depends ?? '').split(',').map((d) => d.split('|')[0]!.trim().split(/[\s(]/)[0]!).filter(Boolean),
    installed_kb: Number(f['Installed-Size'] ?? 0) || 0,
  };
}

/** The host package of the console's library (the newest hitless-host deb there), or null. */
export function libraryPackageFile(dir: string | null): string | null {
  if (!dir) return null;
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /^hitless-host_[^/]+\.deb$/.test(n));
  } catch {
    return null;
  }
  const newest = names.map((n) => ({ n, t: statSync(join(dir, n)).mtimeMs })).sort((a, b) => b.t - a.t)[0];
  return newest ? join(dir, newest.n) : null;
}

/** The agent's version in a package version: 0.1.0~dev-1 → 0.1.0. */
export function upstreamVersion(v: string): string {
  return v.replace(/^\d+:/, '').replace(/[~+-].*$/, '');
}

/** The command that installs the copied package at path (run as the SSH login). */
export function installCommand(target: HostPackageTarget, path: string, root: boolean): string {
  // an operator's edited conffile (release-signers, the sudoers rule) is kept, never asked about
  if (target.method === 'dpkg') return `${root ? '' : 'sudo -n '}dpkg --force-confdef --force-confold -i ${shellWord(path)} </dev/null`;
  // a new directory beside the old, then the link renamed over: an agent starting meanwhile
  // finds the old package or the new, never half of one; older directories are removed after
  const d = target.dir;
  return [
    'set -e',
    `new=${shellWord(d)}.$(date +%s%N)`,
    `mkdir -p "$new"`,
    `dpkg -x ${shellWord(path)} "$new"`,
    `if [ -d ${shellWord(d)} ] && [ ! -L ${shellWord(d)} ]; then rm -rf ${shellWord(d)}; fi`,
    `ln -sfn "$(basename "$new")" ${shellWord(`${d}.link`)}`,
    `mv -Tf ${shellWord(`${d}.link`)} ${shellWord(d)}`,
    `for o in ${shellWord(d)}.*; do [ "$o" = "$new" ] || rm -rf "$o"; done`,
  ].join('; ');
}

/** The preview's lines: what is checked, copied and run on each host. */
export function installPreview(p: LocalPackage, hosts: { name: string; target: HostPackageTarget }[]): string[] {
  const lines = [`host package ${p.package} ${p.version} (${p.architecture}) from ${p.file}: ${p.bytes} bytes, sha256 ${p.sha256}`];
  for (const h of hosts) {
    lines.push(
      `${h.name}, over its own SSH connection:`,
      `  1. checks: dpkg --print-architecture is ${p.architecture}; the ${p.depends.length} packages it depends on are installed (${p.depends.filter((d) => d.startsWith('librte')).length} of them DPDK's); ${h.target.method === 'dpkg' ? 'sudo -n may run dpkg (unless the login is root); ' : ''}free space in /tmp and ${h.target.method === 'dpkg' ? '/usr' : dirname(h.target.dir)} — any failing: nothing is copied`,
      `  2. SFTP: ${p.file} into /tmp/hitless-upload-<random>/ (a directory made for it, mode 0700)`,
      h.target.method === 'dpkg'
        ? `  3. run: [sudo -n] dpkg --force-confdef --force-confold -i /tmp/hitless-upload-<random>/${p.file} (keeps conffiles the operator edited; installs /usr/bin/hitless-agent, the keeper, /etc/hitless/, the hitless group and its sudoers rule)`
        : `  3. run: dpkg -x into a new directory beside ${h.target.dir}, then ${h.target.dir} (a link) renamed over to it (this host shares its filesystem with others)`,
      `  4. SFTP: the copy and its directory removed`,
      `  5. the agent's session reconnected: the new agent takes over from the host's journal and must say version ${upstreamVersion(p.version)}`,
    );
  }
  return lines;
}

interface HostFacts {
  arch: string;
  uid: number;
  user: string;
  sudo: boolean | null;
  tmpKb: number;
  destKb: number;
  missing: string[];
}

/** One round trip: what the checks need to know about the host. */
async function hostFacts(sh: HostShell, p: LocalPackage, target: HostPackageTarget): Promise<HostFacts> {
  const dest = target.method === 'dpkg' ? '/usr' : dirname(target.dir);
  const script = [
    'echo "arch $(dpkg --print-architecture 2>/dev/null || echo none)"',
    'echo "uid $(id -u)"',
    'echo "user $(id -un)"',
    target.method === 'dpkg' ? 'if [ "$(id -u)" != 0 ]; then if sudo -n -l /usr/bin/dpkg -i /tmp/x >/dev/null 2>&1; then echo "sudo yes"; else echo "sudo no"; fi; fi' : 'true',
    'echo "tmp_kb $(df -Pk /tmp | awk \'NR==2{print $4}\')"',
    `echo "dest_kb $(df -Pk ${shellWord(dest)} 2>/dev/null | awk 'NR==2{print $4}')"`,
    `dpkg-query -W -f='ok \${Package} \${db:Status-Abbrev}\\n' ${p.depends.map(shellWord).join(' ')} 2>/dev/null || true`,
  ].join('\n');
  const r = await sh.exec(`sh -c ${shellWord(script)}`);
  if (r.code !== 0) throw new Error(`checking the host: ${r.stderr.trim() || `exit ${r.code}`}`);
  const v = (k: string) => new RegExp(`^${k} (.*)$`, 'm').exec(r.stdout)?.[1]?.trim() ?? '';
  const ok = new Set([...r.stdout.matchAll(/^ok (\S+) ii/gm)].map((m) => m[1]!));
  return {
    arch: v('arch'),
    uid: Number(v('uid')),
    user: v('user'),
    sudo: v('sudo') === '' ? null : v('sudo') === 'yes',
    tmpKb: Number(v('tmp_kb')) || 0,
    destKb: Number(v('dest_kb')) || 0,
    missing: p.depends.filter((d) => !ok.has(d)),
  };
}

/** Every reason the package cannot go on this host, each in words an operator acts on. */
export function refusals(host: string, p: LocalPackage, f: HostFacts, target: HostPackageTarget): string[] {
  const out: string[] = [];
  if (f.arch === 'none') out.push(`${host} has no dpkg: the host package is a Debian package`);
  else if (f.arch !== p.architecture) out.push(`wrong architecture: ${p.file} is for ${p.architecture}, ${host} is ${f.arch}`);
  const dpdk = f.missing.filter((m) => /^(librte|dpdk)/.test(m));
  if (dpdk.length) out.push(`no DPDK: ${host} lacks ${dpdk.join(', ')} (Debian's dpdk packages)`);
  const other = f.missing.filter((m) => !dpdk.includes(m));
  if (other.length) out.push(`${host} lacks packages the agent needs: ${other.join(', ')}`);
  if (target.method === 'dpkg' && f.uid !== 0 && f.sudo === false) out.push(`no sudo rights: ${f.user} on ${host} may not run dpkg as root without a password (sudo -n -l /usr/bin/dpkg)`);
  const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`;
  if (f.tmpKb < Math.ceil(p.bytes / 1024) + 1024) out.push(`disk full: /tmp on ${host} has ${mb(f.tmpKb)} free, the package is ${mb(p.bytes / 1024)}`);
  if (f.destKb < p.installed_kb + 1024) out.push(`disk full: ${target.method === 'dpkg' ? '/usr' : dirname(target.dir)} on ${host} has ${mb(f.destKb)} free, the package installs ${mb(p.installed_kb)}`);
  return out;
}

const tail = (r: ExecResult) => (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-3).join(' / ');

/**
 * Install the package on one host: checks, copy, install, copy removed. Throws InstallRefused
 * (nothing copied) or an Error naming the step that failed. The caller reconnects the agent.
 */
export async function installOnHost(conn: HostConn, p: LocalPackage, deb: string, progress?: (sent: number, total: number) => void): Promise<void> {
  const target = conn.entry.host_package;
  const sh = await conn.shell();
  try {
    const facts = await hostFacts(sh, p, target);
    const no = refusals(conn.entry.name, p, facts, target);
    if (no.length) throw new InstallRefused(`${no.join('; ')}: nothing copied`);
    const up = await sh.upload(deb, progress);
    try {
      const r = await sh.exec(installCommand(target, up.path, facts.uid === 0));
      if (r.code !== 0) throw new Error(`${target.method === 'dpkg' ? 'dpkg -i' : 'unpacking'} on ${conn.entry.name} failed (exit ${r.code}): ${tail(r)}`);
    } finally {
      await up.remove();
    }
  } finally {
    sh.close();
  }
}
