// Putting a signed datapath release on hosts (DESIGN.md §13): the tar is copied over the host's
// own SSH connection (SFTP, into a private directory), and the host's agent verifies it against
// the host's release-signers and installs it; the copy is removed either way. The console reads
// the tar's manifest only to show what it is about to send: the host is the one that decides.
// Not on the console API the renderer calls: a local path is the operator's (the CLI's) to give.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import { agent, type ReleaseInstalled } from '../../../protocol/agent.js';
import { ReleaseManifest } from '../../../protocol/files.js';
import type { HostConn } from './hostConn.js';

export interface LocalRelease {
  file: string;
  bytes: number;
  sha256: string;
  /** as the tar's release.json says (unverified here) */
  release: string;
  kind: string;
}

/** What the tar says it is, its size and digest: for the preview, before anything is sent. */
export async function readLocalRelease(tar: string): Promise<LocalRelease> {
  let st;
  try {
    st = statSync(tar);
  } catch {
    throw new Error(`${tar}: no such file`);
  }
  if (!st.isFile()) throw new Error(`${tar}: not a file`);
  const text = await new Promise<string>((res, rej) =>
    execFile('tar', ['-xOf', tar, 'release.json'], { encoding: 'utf8', maxBuffer: 1 << 20 }, (e, out) => (e ? rej(new Error(`${tar}: not a release tar (no release.json in it)`)) : res(out))),
  );
  let m;
  try {
    m = ReleaseManifest.parse(JSON.parse(text));
  } catch (e) {
    throw new Error(`${tar}: its release.json is not a release manifest: ${(e as Error).message.split('\n')[0]}`);
  }
  const h = createHash('sha256');
  for await (const chunk of createReadStream(tar)) h.update(chunk as Buffer);
  return { file: basename(tar), bytes: st.size, sha256: h.digest('hex'), release: m.release, kind: m.kind };
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
