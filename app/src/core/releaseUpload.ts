// Putting a signed datapath release on hosts (DESIGN.md §13): the tar is copied over the host's
// own SSH connection (SFTP, into a private directory), and the host's agent verifies it against
// the host's release-signers and installs it; the copy is removed either way. The console reads
// the tar's manifest only to show what it is about to send: the host is the one that decides.
// The renderer names a release of the console's library by file name only; a path is the CLI's
// operator's to give.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { agent, type ReleaseInstalled } from '../../../protocol/agent.js';
import type { LibraryRelease } from '../../../protocol/console.js';
import { ReleaseManifest } from '../../../protocol/files.js';
import type { HostConn } from './hostConn.js';

/** A release tar on this machine, as its release.json says (unverified here). */
export type LocalRelease = LibraryRelease;

/** A file the console is about to send: refused unless it is a regular file; its size and sha256
 * (what the preview and the audit log show). */
export async function fileToSend(path: string): Promise<{ bytes: number; sha256: string }> {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new Error(`${path}: no such file`);
  }
  if (!st.isFile()) throw new Error(`${path}: not a file`);
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return { bytes: st.size, sha256: h.digest('hex') };
}

/** What the tar says it is, its size and digest: for the preview, before anything is sent. */
export async function readLocalRelease(tar: string): Promise<LocalRelease> {
  const f = await fileToSend(tar);
  const text = await new Promise<string>((res, rej) =>
    execFile('tar', ['-xOf', tar, 'release.json'], { encoding: 'utf8', maxBuffer: 1 << 20 }, (e, out) => (e ? rej(new Error(`${tar}: not a release tar (no release.json in it)`)) : res(out))),
  );
  let m;
  try {
    m = ReleaseManifest.parse(JSON.parse(text));
  } catch (e) {
    throw new Error(`${tar}: its release.json is not a release manifest: ${(e as Error).message.split('\n')[0]}`);
  }
  return { file: basename(tar), ...f, release: m.release, kind: m.kind };
}

/** The names of the release tars in the console's library (none when it cannot be read). */
export function libraryFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => n.endsWith('.tar')).sort();
  } catch {
    return [];
  }
}

/** The release tars of the console's library (unreadable ones left out), by file name. */
export async function libraryReleases(dir: string | null): Promise<LocalRelease[]> {
  if (!dir) return [];
  const out = [];
  for (const n of libraryFiles(dir)) out.push(await readLocalRelease(join(dir, n)).catch(() => null));
  return out.filter((r) => r !== null);
}

/** The preview's lines: what will be copied where, and what will run on each host. */
export function uploadPreview(r: LocalRelease, hosts: string[]): string[] {
  return [
    `release ${r.release} (${r.kind}) from ${r.file}: ${r.bytes} bytes, sha256 ${r.sha256}`,
    `to ${hosts.join(', ')}, each over its SSH connection:`,
    `  1. SFTP: ${r.file} into /tmp/hitless-upload-<random>/ (a directory made for it, mode 0700)`,
    `  2. the host's agent (already running there under sudo): release/install — checks the signature against the host's release-signers and every file's sha256, then installs into <root>/releases/${r.release}; refused: nothing installed`,
    `  3. SFTP: the uploaded copy and its directory removed`,
  ];
}

/** Upload and install on one connected host. */
export async function uploadRelease(conn: HostConn, tar: string, progress?: (sent: number, total: number) => void): Promise<ReleaseInstalled> {
  const s = conn.session;
  if (!s) throw new Error(`${conn.entry.name} is not connected`);
  const up = await s.upload(tar, progress);
  try {
    return await conn.request(agent.releaseInstall, { tar: up.path });
  } finally {
    await up.remove();
  }
}
