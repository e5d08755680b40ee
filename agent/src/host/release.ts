// Signed releases (DESIGN.md §13). hitless-release-<v>.tar holds, at its top:
//   release.json      the manifest (kind, core, DPDK, stage ABI/layout, modes), its format
//                     version and the sha256 of every other file, by path (bin/hitless-dp ...)
//   release.json.sig  an SSHSIG of release.json (ssh-keygen -Y sign -n hitless-release)
//   bin/...           the files the manifest lists, nothing else
// A release is verified against an allowed-signers file (OpenSSH's format, the one
// ssh-keygen -Y verify reads) when it is installed and again before a generation starts from
// it. What is refused says why: unsigned, a signer not allowed, a manifest changed after
// signing, a file whose digest differs (named), a file missing or extra, an unknown format.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReleaseManifest } from '../../../protocol/files.js';

export const RELEASE_NAMESPACE = 'hitless-release';
export const RELEASE_FORMAT = 1;
export const MANIFEST = 'release.json';
export const SIGNATURE = 'release.json.sig';
/** Where a host keeps the keys its releases may be signed with (the host package installs it). */
export const HOST_SIGNERS = '/etc/hitless/release-signers';

/** A release that must not be installed or run; the message says why. */
export class ReleaseRefused extends Error {}

export interface VerifiedRelease {
  manifest: ReleaseManifest;
  /** the allowed-signers principal whose key made the signature */
  signer: string;
}

function run(cmd: string, args: string[], input?: Buffer): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = execFile(cmd, args, { encoding: 'utf8', maxBuffer: 16 << 20, timeout: 60_000 }, (e, stdout, stderr) => {
      if (e && typeof (e as { code?: unknown }).code !== 'number') return reject(new Error(`${cmd}: ${e.message}`));
      resolve({ code: e ? (e as { code: number }).code : 0, stdout, stderr });
    });
    p.stdin!.end(input);
  });
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Every regular file under dir, as paths relative to it; anything else (a link, a device) is refused. */
function filesUnder(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, r));
    if (st.isDirectory()) out.push(...filesUnder(dir, r));
    else if (st.isFile()) out.push(r);
    else throw new ReleaseRefused(`${r}: not a regular file (a release holds files and directories only)`);
  }
  return out;
}

/** Who signed release.json (the bytes given), checked against the allowed signers: the signature
 * must be made by an allowed key, over these very bytes, for this namespace. */
async function checkSignature(dir: string, manifest: Buffer, signers: string): Promise<string> {
  const sig = join(dir, SIGNATURE);
  if (!existsSync(sig)) throw new ReleaseRefused(`unsigned: it has no ${SIGNATURE}`);
  if (!existsSync(signers)) throw new ReleaseRefused(`no allowed signers at ${signers}: no release can be trusted on this host`);
  const found = await run('ssh-keygen', ['-Y', 'find-principals', '-s', sig, '-f', signers]);
  const principals = found.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  const said = found.stderr.trim().split('\n').at(-1) ?? '';
  if (found.code !== 0 || principals.length === 0) {
    if (/Couldn't parse signature|not a signature|invalid format/i.test(found.stderr)) throw new ReleaseRefused(`${SIGNATURE} is not an SSH signature (${said})`);
    throw new ReleaseRefused(`signed by a key that is not in ${signers}${said ? ` (ssh-keygen: ${said})` : ''}`);
  }
  // the same key may be listed under several names: any one allowed for this namespace will do
  let last = '';
  for (const principal of principals) {
    const v = await run('ssh-keygen', ['-Y', 'verify', '-f', signers, '-I', principal, '-n', RELEASE_NAMESPACE, '-s', sig], manifest);
    if (v.code === 0) return principal;
    last = v.stderr.trim().split('\n').at(-1) ?? '';
  }
  throw new ReleaseRefused(`${MANIFEST} does not match its signature by ${principals.join(', ')} (changed after signing, or signed for another use than ${RELEASE_NAMESPACE}${last ? `; ssh-keygen: ${last}` : ''})`);
}

/** Verify an unpacked release: format, signature, then every file against the signed digests. */
export async function verifyReleaseDir(dir: string, signers: string): Promise<VerifiedRelease> {
  // the release directory itself: a real directory nobody but its owner may write to (a link
  // or a group-writable directory would let its files change between this check and their use)
  const st = lstatSync(dir, { throwIfNoEntry: false });
  if (!st?.isDirectory()) throw new ReleaseRefused(`${dir}: not a directory`);
  if (st.mode & 0o022) throw new ReleaseRefused(`${dir}: writable by others than its owner (mode ${(st.mode & 0o777).toString(8)})`);
  let bytes: Buffer;
  let raw: unknown;
  try {
    bytes = readFileSync(join(dir, MANIFEST)); // read once: these bytes are verified and parsed
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new ReleaseRefused(`${MANIFEST}: ${(e as Error).message}`);
  }
  const format = (raw as { format?: unknown } | null)?.format;
  if (format === undefined) throw new ReleaseRefused(`${MANIFEST} has no format version: not a signed release`);
  if (format !== RELEASE_FORMAT) throw new ReleaseRefused(`${MANIFEST}: format version ${JSON.stringify(format)} is unknown (this agent reads ${RELEASE_FORMAT})`);
  const signer = await checkSignature(dir, bytes, signers);
  const m = ReleaseManifest.safeParse(raw);
  if (!m.success) {
    const i = m.error.issues[0]!;
    throw new ReleaseRefused(`${MANIFEST}: ${i.path.join('.') || '(top)'}: ${i.message}`);
  }
  const listed = m.data.files ?? {};
  if (Object.keys(listed).length === 0) throw new ReleaseRefused(`${MANIFEST} lists no files`);
  const present = filesUnder(dir).filter((f) => f !== MANIFEST && f !== SIGNATURE);
  for (const f of present) if (!Object.hasOwn(listed, f)) throw new ReleaseRefused(`${f} is not in the signed manifest`);
  for (const [f, digest] of Object.entries(listed)) {
    if (!present.includes(f)) throw new ReleaseRefused(`${f} is listed in the signed manifest but missing`);
    if (sha256File(join(dir, f)) !== digest) throw new ReleaseRefused(`${f}: its sha256 differs from the signed manifest's (changed after signing)`);
  }
  return { manifest: m.data, signer };
}

const MEMBER = /^(\.\/)?[A-Za-z0-9_+-][A-Za-z0-9._+-]*(\/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)*\/?$/;

/** Unpack a release tar into a new directory under parent, refusing anything but plain files and
 * directories with plain names (no links, devices, absolute paths or ..). */
async function unpack(tar: string, parent: string): Promise<string> {
  if (!existsSync(tar)) throw new ReleaseRefused(`${tar}: no such file`);
  const list = await run('tar', ['-tvf', tar]);
  if (list.code !== 0) throw new ReleaseRefused(`${tar}: not a tar archive (${list.stderr.trim().split('\n')[0]})`);
  const names = await run('tar', ['-tf', tar]);
  const types = list.stdout.split('\n').filter(Boolean);
  const paths = names.stdout.split('\n').filter(Boolean);
  paths.forEach((p, i) => {
    const t = types[i]?.[0];
    if (!MEMBER.test(p) || p.split('/').includes('..')) throw new ReleaseRefused(`${tar}: member ${JSON.stringify(p)} has a name a release cannot have`);
    if (t !== '-' && t !== 'd') throw new ReleaseRefused(`${tar}: member ${p} is not a file or directory`);
  });
  const dir = mkdtempSync(join(parent, '.incoming-'));
  const x = await run('tar', ['-xf', tar, '-C', dir, '--no-same-owner', '--no-same-permissions', '--delay-directory-restore']);
  if (x.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new ReleaseRefused(`${tar}: could not be unpacked: ${x.stderr.trim().split('\n')[0]}`);
  }
  return dir;
}

/** Verify a release tar without installing it. */
export async function verifyReleaseTar(tar: string, signers: string): Promise<VerifiedRelease> {
  const dir = await unpack(tar, tmpdir());
  try {
    return await verifyReleaseDir(dir, signers);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Install a release tar as <root>/releases/<version>: verified first, in a staging directory
 * beside its place, and moved there only whole. A release already installed with the same
 * signed manifest is left as it is; one with different contents is refused. */
export async function installReleaseTar(tar: string, root: string, signers: string): Promise<VerifiedRelease & { installed: boolean }> {
  const releases = join(root, 'releases');
  if (!existsSync(releases)) throw new ReleaseRefused(`${releases}: no such directory (is ${root} a Hitless host root?)`);
  const dir = await unpack(tar, releases);
  try {
    const v = await verifyReleaseDir(dir, signers);
    const dest = join(releases, v.manifest.release);
    if (existsSync(dest)) {
      const same = existsSync(join(dest, MANIFEST)) && readFileSync(join(dest, MANIFEST)).equals(readFileSync(join(dir, MANIFEST)));
      if (!same) throw new ReleaseRefused(`release ${v.manifest.release} is installed already, with other contents: remove it first (it must not be the one running)`);
      // the same manifest: the installed files must still be what it signs
      await verifyReleaseDir(dest, signers).catch((e: Error) => {
        throw new ReleaseRefused(`release ${v.manifest.release} is installed already, but its installed copy fails the check (${e.message}): remove it first`);
      });
      return { ...v, installed: false };
    }
    renameSync(dir, dest);
    return { ...v, installed: true };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
