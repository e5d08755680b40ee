// bench/run approval [--quick] [--n N]
//
// What a signed approval (DESIGN.md §15) adds to each switch: the console signing the decision
// (ssh-keygen -Y sign, approvalSign.ts) and the agent verifying it against an approvers file of
// a few keys (ssh-keygen -Y find-principals and -Y verify, approvers.ts), each timed on its own,
// N times, with the same machine's time to start a trivial process beside them (the noise floor
// of anything done by running a tool).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { contextDigest, signApproval } from '../app/src/core/approvalSign.js';
import { verifyApproval } from '../agent/src/host/approvers.js';
import { finish, numOpt, pct, quick, run } from './lib.js';

const n = numOpt('approval', '--n', quick ? 30 : 200);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'hl-bench-approval-'));
  try {
    mkdirSync(join(dir, 'etc'));
    const keys = ['alice', 'bob', 'carol', 'dave'].map((name) => {
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', join(dir, name)]);
      return { name, file: join(dir, name), pub: readFileSync(join(dir, `${name}.pub`), 'utf8').trim() };
    });
    writeFileSync(join(dir, 'etc', 'approvers'), keys.map((k) => `${k.name} ${k.pub}`).join('\n') + '\n');
    const signMs: number[] = [];
    const verifyMs: number[] = [];
    const spawnMs: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      execFileSync('true');
      spawnMs.push(performance.now() - t0);
      const t1 = performance.now();
      const signed = await signApproval(
        { campaign: 'c-bench', kind: 'vm', host: 'h1', vms: [`v${i}`], release: '1.1.0', mode: 'handoff', decision: 'approve', reason: '', budget: null, decided: new Date().toISOString(), context: contextDigest(i) },
        keys[i % keys.length]!.file,
      );
      signMs.push(performance.now() - t1);
      const t2 = performance.now();
      const v = await verifyApproval(dir, signed, { host: 'h1', kinds: ['vm'], decision: 'approve', vms: [`v${i}`], release: '1.1.0', campaign: 'c-bench', used: () => null });
      verifyMs.push(performance.now() - t2);
      if (v?.signer.principal !== keys[i % keys.length]!.name) throw new Error(`approval ${i}: verified as ${v?.signer.principal}`);
    }
    const result = { n, approvers: keys.length, sign_ms: pct(signMs), verify_ms: pct(verifyMs), noise: { spawn_true_ms: pct(spawnMs) } };
    finish('approval', [
      `${n} approvals, each signed with one of ${keys.length} keys and verified against an approvers file of ${keys.length}:`,
      `- sign (ssh-keygen -Y sign): p50 ${result.sign_ms.p50} ms, p99 ${result.sign_ms.p99} ms, max ${result.sign_ms.max} ms`,
      `- verify (find-principals + verify): p50 ${result.verify_ms.p50} ms, p99 ${result.verify_ms.p99} ms, max ${result.verify_ms.max} ms`,
      `- noise: starting /bin/true p50 ${result.noise.spawn_true_ms.p50} ms, p99 ${result.noise.spawn_true_ms.p99} ms, max ${result.noise.spawn_true_ms.max} ms`,
    ], result);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

run('approval', main);
