// known_hosts, as OpenSSH reads it: plain names and patterns (case-insensitive), "[host]:port"
// for other ports, hashed names (|1|salt|hash), @revoked (always wins) and @cert-authority
// markers. A host key is a match, changed (refused: an attack or a reinstalled host, and a
// person must look), revoked, or unknown: then the CAs trusted for the name are returned (a
// host certificate may vouch for the key: hostCert.ts), and the key types the host is known
// under, so that a host known by another type of key says so.
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync } from 'node:fs';
import { matchPatternList } from '../../../../protocol/patterns.js';

export type KeyVerdict =
  | { kind: 'match' }
  | { kind: 'unknown'; cas: Buffer[]; revoked: Buffer[]; otherTypes: string[] }
  | { kind: 'changed'; known: string[] }
  | { kind: 'revoked' };

interface Entry {
  marker: '' | '@revoked' | '@cert-authority';
  names: string;
  type: string;
  key: Buffer;
}

function parse(text: string): Entry[] {
  const out: Entry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const f = line.split(/\s+/);
    const marker = f[0]!.startsWith('@') ? (f.shift() as Entry['marker']) : '';
    if (f.length < 3) continue;
    out.push({ marker, names: f[0]!, type: f[1]!, key: Buffer.from(f[2]!, 'base64') });
  }
  return out;
}

/** How OpenSSH names a host in known_hosts: "host" on port 22, "[host]:port" otherwise. */
export function hostToken(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function namesMatch(names: string, token: string): boolean {
  if (names.startsWith('|1|')) {
    const [, , salt, hash] = names.split('|');
    return createHmac('sha1', Buffer.from(salt!, 'base64')).update(token).digest('base64') === hash;
  }
  return matchPatternList(token, names);
}

/** The type ("ssh-ed25519") inside an SSH wire-format public key blob. */
export function keyType(key: Buffer): string {
  const len = key.readUInt32BE(0);
  return key.subarray(4, 4 + len).toString('latin1');
}

/** SHA256 fingerprint as ssh-keygen -l prints it. */
export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

export function verifyHostKey(knownHostsPaths: string[], host: string, port: number, key: Buffer): KeyVerdict {
  // OpenSSH looks host names up in lower case (and hashes them so)
  const token = hostToken(host.toLowerCase(), port);
  const type = keyType(key);
  const known: string[] = [];
  const cas: Buffer[] = [];
  const revoked: Buffer[] = [];
  const otherTypes = new Set<string>();
  let matched = false;
  for (const path of knownHostsPaths) {
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      continue;
    }
    for (const e of parse(text)) {
      // a revoked key is revoked whatever name it is listed under
      if (e.marker === '@revoked') {
        if (e.key.equals(key)) return { kind: 'revoked' };
        revoked.push(e.key);
        continue;
      }
      if (!namesMatch(e.names, token)) continue;
      if (e.marker === '@cert-authority') cas.push(e.key);
      else if (e.key.equals(key)) matched = true;
      else if (e.type === type) known.push(fingerprint(e.key));
      else otherTypes.add(e.type);
    }
  }
  if (matched) return { kind: 'match' };
  return known.length > 0 ? { kind: 'changed', known } : { kind: 'unknown', cas, revoked, otherTypes: [...otherTypes] };
}

/** Remember an accepted key (hashed, as OpenSSH's HashKnownHosts does). */
export function rememberHostKey(path: string, host: string, port: number, key: Buffer): void {
  const salt = randomBytes(20);
  const hash = createHmac('sha1', salt).update(hostToken(host.toLowerCase(), port)).digest('base64');
  appendFileSync(path, `|1|${salt.toString('base64')}|${hash} ${keyType(key)} ${key.toString('base64')}\n`, { mode: 0o600 });
}
