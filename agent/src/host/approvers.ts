// Who may approve on this host (DESIGN.md §15): <root>/etc/approvers (/etc/hitless/approvers on
// a host with the package), in OpenSSH's allowed_signers format. When the file exists, every
// approval and denial the agent acts on must be an SSHSIG signature (namespace hitless-approval)
// by one of its keys over exactly what is asked (this host, these VMs, this release, this
// campaign, signed within the last minutes, never used before); anything else is refused and
// nothing moves. ssh-keygen -Y verifies the signature itself.
//
// Besides OpenSSH's own options (cert-authority, namespaces, valid-after, valid-before) a line
// may restrict its principals with hitless-hosts="h1,web-*" (the hosts they may approve on)
// and hitless-max-gap-ms=N / hitless-max-lost=N (the largest auto-mode budget they may
// approve). ssh-keygen is given the file without those.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { APPROVAL_MAX_AGE_MS, APPROVAL_NAMESPACE, ApprovalPayload, type ApprovalKind, type Signer, type SignedApproval } from '../../../protocol/approval.js';
import type { Budget } from '../../../protocol/measure.js';
import { AgentFailure } from './derive.js';
import { matchPatternList } from '../../../protocol/patterns.js';

export const approversPath = (root: string) => join(root, 'etc', 'approvers');

const KEY_TYPE = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)(-cert-v01@openssh\.com)?$/;
const SSH_OPTIONS = new Set(['cert-authority', 'namespaces', 'valid-after', 'valid-before']);

export interface Approver {
  line: number;
  principals: string;
  fingerprint: string;
  hosts: string[] | null;
  max_gap_ms: number | null;
  max_lost: number | null;
}

/** Split on blanks outside double quotes. */
function words(s: string, sep: RegExp): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of s) {
    if (ch === '"') quoted = !quoted;
    if (!quoted && sep.test(ch)) {
      if (cur !== '') out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (quoted) throw new Error('an unterminated "');
  if (cur !== '') out.push(cur);
  return out;
}

export const fingerprintOf = (base64Blob: string) => `SHA256:${createHash('sha256').update(Buffer.from(base64Blob, 'base64')).digest('base64').replace(/=+$/, '')}`;

/** The approvers file read: its lines with their restrictions, and the file for ssh-keygen. */
export function parseApprovers(text: string, file: string): { approvers: Approver[]; allowedSigners: string } {
  const approvers: Approver[] = [];
  const out: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${file}:${i + 1}`;
    let w: string[];
    try {
      w = words(line, /\s/);
    } catch (e) {
      throw new Error(`${where}: ${(e as Error).message}`);
    }
    const at = w.findIndex((x, k) => k > 0 && KEY_TYPE.test(x));
    if (at < 1 || at > 2 || !w[at + 1]) throw new Error(`${where}: not "principals [options] keytype key": no key type where one belongs`);
    const a: Approver = { line: i + 1, principals: w[0]!, fingerprint: fingerprintOf(w[at + 1]!), hosts: null, max_gap_ms: null, max_lost: null };
    const keep: string[] = [];
    for (const opt of at === 2 ? words(w[1]!, /,/) : []) {
      const eq = opt.indexOf('=');
      const name = (eq < 0 ? opt : opt.slice(0, eq)).toLowerCase();
      const value = eq < 0 ? null : opt.slice(eq + 1).replace(/^"(.*)"$/, '$1');
      const num = () => {
        if (value === null || !/^\d+$/.test(value)) throw new Error(`${where}: ${name} needs a whole number`);
        return Number(value);
      };
      if (name === 'hitless-hosts') {
        if (!value) throw new Error(`${where}: hitless-hosts needs a list of host patterns`);
        a.hosts = value.split(',');
      } else if (name === 'hitless-max-gap-ms') a.max_gap_ms = num();
      else if (name === 'hitless-max-lost') a.max_lost = num();
      else if (SSH_OPTIONS.has(name)) keep.push(opt);
      else throw new Error(`${where}: unknown option ${name} (OpenSSH's cert-authority, namespaces, valid-after, valid-before, or hitless-hosts, hitless-max-gap-ms, hitless-max-lost)`);
    }
    approvers.push(a);
    out.push([w[0]!, ...(keep.length ? [keep.join(',')] : []), ...w.slice(at)].join(' '));
  });
  return { approvers, allowedSigners: `${out.join('\n')}\n` };
}

function sshKeygen(args: string[], stdin: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = execFile('ssh-keygen', args, { timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 255) : 0;
      resolve({ code, out: `${stdout}${stderr}`.trim() });
    });
    p.stdin!.end(stdin);
  });
}

/** What the request being approved is: the approval must say exactly this. */
export interface Expect {
  host: string;
  kinds: ApprovalKind[];
  decision: 'approve' | 'deny';
  /** every one of these must be among the approval's VMs */
  vms: string[];
  /** null: a step of no particular release (the keeper's) */
  release: string | null;
  /** the campaign the host's upgrade was prepared for (null: any) */
  campaign: string | null;
  /** auto and wave: the budget the agent will judge by must be the one approved */
  budget?: Budget | null;
  /** an earlier use of this signature (its journal seq), if any */
  used: (signatureDigest: string) => number | null;
}

const refuse = (why: string): never => {
  throw new AgentFailure('refused', `approval refused: ${why}; nothing was changed`);
};

/** Verify a signed approval against the host's approvers file. Returns null when the host has
 * no approvers file and none was given (approvals are then the console's business alone). */
export async function verifyApproval(root: string, signed: SignedApproval | undefined, expect: Expect): Promise<{ payload: ApprovalPayload; signer: Signer; digest: string } | null> {
  const file = approversPath(root);
  if (!existsSync(file)) return null;
  if (!signed) return refuse(`${expect.host} verifies approvals (${file}): this request carries no signed approval; sign with an SSH key listed there`);
  let parsed: ReturnType<typeof parseApprovers>;
  try {
    parsed = parseApprovers(readFileSync(file, 'utf8'), file);
  } catch (e) {
    return refuse(`the host's approvers file does not parse: ${(e as Error).message}`);
  }
  let p: ApprovalPayload;
  try {
    p = ApprovalPayload.parse(JSON.parse(signed.payload));
  } catch (e) {
    return refuse(`the signed text is not an approval: ${(e as Error).message.slice(0, 300)}`);
  }
  const digest = createHash('sha256').update(signed.signature).digest('hex');
  const dir = mkdtempSync(join(tmpdir(), 'hitless-approval-'));
  let signer: Signer;
  try {
    writeFileSync(join(dir, 'allowed_signers'), parsed.allowedSigners, { mode: 0o600 });
    writeFileSync(join(dir, 'sig'), signed.signature, { mode: 0o600 });
    const found = await sshKeygen(['-Y', 'find-principals', '-s', join(dir, 'sig'), '-f', join(dir, 'allowed_signers')], '');
    const principal = found.code === 0 ? found.out.split('\n')[0]!.trim() : '';
    if (!principal) return refuse(`signed by a key that is not in ${file}`);
    const v = await sshKeygen(['-Y', 'verify', '-f', join(dir, 'allowed_signers'), '-I', principal, '-n', APPROVAL_NAMESPACE, '-s', join(dir, 'sig')], signed.payload);
    const fp = /key (SHA256:[A-Za-z0-9+/]+)/.exec(v.out)?.[1];
    if (v.code !== 0 || !fp) return refuse(`the signature does not verify for ${principal}: ${v.out.split('\n')[0]}`);
    signer = { principal, fingerprint: fp };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // the signature is good: now it must approve exactly this
  const who = `${signer.principal} (${signer.fingerprint})`;
  if (p.host !== expect.host) refuse(`it was signed by ${who} for host ${p.host}, this is ${expect.host}`);
  if (!expect.kinds.includes(p.kind)) refuse(`it approves a ${p.kind} step; this request needs ${expect.kinds.join(' or ')}`);
  if (p.decision !== expect.decision) refuse(`it is a decision to ${p.decision}, not to ${expect.decision}`);
  const extra = expect.vms.filter((vm) => !p.vms.includes(vm));
  if (extra.length) refuse(`it approves ${p.vms.join(', ') || 'no VM'}, not ${extra.join(', ')}`);
  if (expect.release !== null && p.release !== expect.release) refuse(`it approves release ${p.release}; the host is moving to ${expect.release}`);
  if (expect.campaign !== null && p.campaign !== expect.campaign) refuse(`it is for campaign ${p.campaign}; the host's upgrade is campaign ${expect.campaign}`);
  const age = Date.now() - Date.parse(p.at);
  if (age > APPROVAL_MAX_AGE_MS || age < -APPROVAL_MAX_AGE_MS) refuse(`it was signed at ${p.at}, more than ${APPROVAL_MAX_AGE_MS / 60_000} minutes from this host's clock (${new Date().toISOString()})`);
  if (expect.budget !== undefined && JSON.stringify(p.budget) !== JSON.stringify(expect.budget)) refuse(`it approves the budget ${JSON.stringify(p.budget)}, the request runs with ${JSON.stringify(expect.budget)}`);
  const seq = expect.used(digest);
  if (seq !== null) refuse(`this signed approval was already used (journal seq ${seq}): a replay`);
  const lines = parsed.approvers.filter((a) => a.fingerprint === signer.fingerprint && matchPatternList(signer.principal, a.principals));
  for (const a of lines) {
    if (a.hosts && !a.hosts.some((h) => matchPatternList(expect.host, h))) refuse(`${who} may approve on ${a.hosts.join(', ')} only (${file}:${a.line})`);
    if (p.budget && a.max_gap_ms !== null && p.budget.max_gap_ms > a.max_gap_ms) refuse(`${who} may approve a gap of ${a.max_gap_ms} ms at most, not ${p.budget.max_gap_ms} (${file}:${a.line})`);
    if (p.budget && a.max_lost !== null && p.budget.max_lost > a.max_lost) refuse(`${who} may approve ${a.max_lost} lost frames at most, not ${p.budget.max_lost} (${file}:${a.line})`);
  }
  return { payload: p, signer, digest };
}
