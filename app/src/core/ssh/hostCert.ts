// Host certificates (known_hosts @cert-authority, how large fleets avoid a prompt per host):
// ssh2 negotiates plain host keys only, so the host's certificates are fetched on a connection
// of their own by OpenSSH's ssh-keyscan -c (through the jump hosts when there are any), and the
// key ssh2 was shown is accepted when one of them certifies exactly that key for this host
// name, now, signed by a CA known_hosts trusts for the name, neither revoked. Certificate
// parsing and the CA signature check are sshpk's.
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import sshpk from 'sshpk';

export interface CertCheck {
  ok: boolean;
  /** why not, or which CA and certificate vouched for the key */
  why: string;
}

function keyscan(host: string, port: number): Promise<string[]> {
  return new Promise((resolve) => {
    execFile('ssh-keyscan', ['-c', '-T', '5', '-p', String(port), host], { timeout: 15_000 }, (_e, stdout) =>
      resolve(stdout.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))),
    );
  });
}

/** The host's certificates as it presents them: directly, or through open() (a channel to the
 * host through the jump hosts), relayed to ssh-keyscan over a loopback port of our own. */
export async function hostCertificates(host: string, port: number, open?: () => Promise<Duplex>): Promise<string[]> {
  if (!open) return keyscan(host, port);
  const server: Server = createServer((sock) => {
    open().then(
      (ch) => {
        sock.pipe(ch).pipe(sock);
        sock.on('close', () => ch.destroy());
        ch.on('close', () => sock.destroy());
      },
      () => sock.destroy(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    return await keyscan('127.0.0.1', (server.address() as { port: number }).port);
  } finally {
    server.close();
  }
}

/** Whether one of certs certifies key (SSH wire format) as host name, signed by one of cas and
 * none of revoked. */
export function certifies(certs: string[], key: Buffer, name: string, cas: Buffer[], revoked: Buffer[]): CertCheck {
  const shown = sshpk.parseKey(key, 'rfc4253');
  const caKeys = cas.map((c) => sshpk.parseKey(c, 'rfc4253'));
  const revokedFps = new Set(revoked.map((r) => sshpk.parseKey(r, 'rfc4253').fingerprint('sha256').toString()));
  const reasons: string[] = [];
  for (const line of certs) {
    let cert: sshpk.Certificate;
    try {
      // ssh-keyscan -c prints "type base64" (a host name first where it prints plain keys)
      const parts = line.split(/\s+/);
      const at = parts.findIndex((p) => /-cert-v01@openssh\.com$/.test(p));
      cert = sshpk.parseCertificate(parts.slice(at, at + 2).join(' '), 'openssh');
    } catch (e) {
      reasons.push(`an unreadable certificate (${(e as Error).message})`);
      continue;
    }
    const fp = cert.subjectKey.fingerprint('sha256').toString();
    if (fp !== shown.fingerprint('sha256').toString()) {
      reasons.push(`a certificate for another key (${fp})`);
      continue;
    }
    const principals = cert.subjects.filter((s) => s.type === 'host').map((s) => s.hostname ?? '');
    if (!principals.some((p) => p.toLowerCase() === name.toLowerCase())) {
      reasons.push(`a certificate for ${principals.join(', ') || 'no host name'}, not ${name}`);
      continue;
    }
    if (cert.isExpired()) {
      reasons.push(`a certificate valid ${cert.validFrom.toISOString()} to ${cert.validUntil.toISOString()}, not now`);
      continue;
    }
    const ca = caKeys.find((k) => cert.isSignedByKey(k));
    if (!ca) {
      reasons.push('a certificate signed by no CA known_hosts trusts for this host');
      continue;
    }
    const caFp = ca.fingerprint('sha256').toString();
    if (revokedFps.has(caFp)) return { ok: false, why: `its certificate's CA ${caFp} is marked @revoked in known_hosts` };
    if (revokedFps.has(fp)) return { ok: false, why: `its key ${fp} is marked @revoked in known_hosts` };
    return { ok: true, why: `certified for ${name} by CA ${caFp}` };
  }
  return { ok: false, why: certs.length ? `the host presents ${reasons.join('; ')}` : 'the host presents no certificate (ssh-keyscan -c found none)' };
}
