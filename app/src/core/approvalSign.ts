// Signing an operator's decision (DESIGN.md §15): the approval payload, as the exact text
// signed, with an SSHSIG signature in namespace hitless-approval made by ssh-keygen -Y sign with
// the operator's SSH key — a private key file (ssh-keygen asks on the terminal for its
// passphrase when it has one), or a public key whose private half is in ssh-agent. Each use is
// signed afresh (its own time and nonce): the host's agent refuses a signature seen before.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { APPROVAL_NAMESPACE, ApprovalPayload, type SignedApproval } from '../../../protocol/approval.js';

/** What an operator decided, about what, for one host: the payload less its stamps. */
export type ApprovalFacts = Omit<ApprovalPayload, 'v' | 'ns' | 'at' | 'nonce'>;

/** sha256 (hex) of the context the operator was shown when deciding (an Approval, a plan). */
export const contextDigest = (shown: unknown) => createHash('sha256').update(JSON.stringify(shown ?? null)).digest('hex');

export class SigningError extends Error {}

/** Sign facts with key (a private key file, or a .pub of a key in ssh-agent). */
export async function signApproval(facts: ApprovalFacts, key: string): Promise<SignedApproval> {
  if (!existsSync(key)) throw new SigningError(`signing key ${key}: no such file (give the SSH key the hosts' approvers files list: --identity, HITLESS_IDENTITY)`);
  const payload = JSON.stringify(ApprovalPayload.parse({ v: 1, ns: APPROVAL_NAMESPACE, ...facts, at: new Date().toISOString(), nonce: randomBytes(16).toString('hex') }));
  const signature = await new Promise<string>((resolve, reject) => {
    // stdin carries the payload; a passphrase is asked on the terminal (or refused without one)
    const p = spawn('ssh-keygen', ['-q', '-Y', 'sign', '-n', APPROVAL_NAMESPACE, '-f', key], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', (e) => reject(new SigningError(`ssh-keygen: ${e.message}`)));
    p.on('close', (code) => (code === 0 && out.includes('BEGIN SSH SIGNATURE') ? resolve(out) : reject(new SigningError(`signing with ${key} failed: ${err.trim() || `ssh-keygen exited ${code}`}`))));
    p.stdin.end(payload);
  });
  return { payload, signature };
}
