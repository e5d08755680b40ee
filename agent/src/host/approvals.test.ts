// Signed approvals verified by the host (DESIGN.md §15): the real agent with an approvers file
// on its host, approvals signed by the console's signer (ssh-keygen -Y sign) with real keys,
// real generations and probe VMs; and the host journal's hash chain as an auditor reads it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { agent, AgentError } from '../../../protocol/agent.js';
import type { SignedApproval } from '../../../protocol/approval.js';
import { verifyChain } from '../../../protocol/chain.js';
import { contextDigest, signApproval, type ApprovalFacts } from '../../../app/src/core/approvalSign.js';
import { agentsOn, hostRoot, probeOn } from '../../../testing/agentHost.js';
import { Testbed } from '../../../testing/testbed.js';
import { Journal, sha256hex } from './journal.js';
import { parseApprovers } from './approvers.js';

describe('approvals the host verifies', () => {
  const bed = new Testbed('approvals');
  const { spawn: spawnAgent, cleanup } = agentsOn(bed);
  after(cleanup);
  const key = (name: string) => {
    const f = join(bed.dir, `id_${name}`);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', f]);
    return { file: f, pub: readFileSync(`${f}.pub`, 'utf8').trim() };
  };

  test('an approval signed by a key not in approvers, or for another VM, is refused and moves nothing; a valid one moves the VM and the journal names its signer', async () => {
    const alice = key('alice');
    const mallory = key('mallory');
    const root = hostRoot(bed, 'h1', 3);
    writeFileSync(join(root, 'etc', 'approvers'), `# who may approve on this host\nalice@noc hitless-hosts="h*",namespaces="hitless-approval" ${alice.pub}\n`);
    const a = spawnAgent(root);
    await a.client.request(agent.hostStart, { release: '1.0.0' });
    const probe = await probeOn(bed, root, 'h1', 3);
    const st0 = await a.client.request(agent.upgradePrepare, { release: '1.1.0', campaign: 'c-1' });
    const facts = (vms: string[], over: Partial<ApprovalFacts> = {}): ApprovalFacts => ({
      campaign: 'c-1', kind: 'vm', host: st0.host, vms, release: '1.1.0', mode: 'handoff', decision: 'approve', reason: '', budget: null,
      decided: new Date().toISOString(), context: contextDigest({ vm: vms[0] }), ...over,
    });
    const refused = async (approval: SignedApproval | undefined, vms: string[], why: RegExp) => {
      await assert.rejects(a.client.request(agent.upgradeSwitch, { vms, ...(approval ? { approval } : {}) }), (e: { code: number; message: string }) => e.code === AgentError.Refused && why.test(e.message));
      const st = await a.client.request(agent.upgradeStatus, {});
      for (const vm of vms) assert.equal(st.vms.find((v) => v.vm === vm)?.serving, st0.active!.gen, `${vm} stays on the old generation`);
    };

    await refused(undefined, ['v1'], /carries no signed approval/);
    await refused(await signApproval(facts(['v1']), mallory.file), ['v1'], /not in .*approvers/);
    await refused(await signApproval(facts(['v1'], { host: 'h9' }), alice.file), ['v1'], /for host h9/);
    await refused(await signApproval(facts(['v1'], { campaign: 'c-0' }), alice.file), ['v1'], /campaign c-0/);
    // the signed text altered after signing: ssh-keygen finds the signature bad
    const good = await signApproval(facts(['v1']), alice.file);
    await refused({ ...good, payload: good.payload.replace('"v1"', '"v2"') }, ['v2'], /does not verify/);
    // v1's approval presented for v2: a replay onto another VM
    await refused(good, ['v2'], /approves v1, not v2/);

    const st = await a.client.request(agent.upgradeSwitch, { vms: ['v1'], approval: good });
    assert.equal(st.vms.find((v) => v.vm === 'v1')?.serving, st0.target!.gen);
    // used once: the same signature again is a replay
    await assert.rejects(a.client.request(agent.upgradeSwitch, { vms: ['v1'], approval: good }), /already used \(journal seq \d+\)/);

    // a signed denial is journaled and moves nothing
    await a.client.request(agent.upgradeDeny, { vms: ['v2'], approval: await signApproval(facts(['v2'], { decision: 'deny', reason: 'not in this window' }), alice.file) });
    assert.equal((await a.client.request(agent.upgradeStatus, {})).vms.find((v) => v.vm === 'v2')?.serving, st0.active!.gen);

    const j = await a.client.request(agent.journalRead, {});
    assert.equal(j.approvers, true);
    const v = verifyChain(j.lines, sha256hex);
    assert.ok(v.intact, JSON.stringify(v.problem));
    const approvals = v.objects.filter((o) => o.type === 'approval');
    assert.deepEqual(approvals.map((o) => [o.decision, o.signer, o.vms]), [['approve', 'alice@noc', ['v1']], ['deny', 'alice@noc', ['v2']]]);
    assert.match(String(approvals[0]!.fingerprint), /^SHA256:/);
    // every line names the session that wrote it
    assert.ok(v.objects.every((o) => typeof (o.by as { user?: unknown } | undefined)?.user === 'string'), j.lines[0]);
    probe.kill();
  });

  test('auto mode needs its budget signed; a principal limited to smaller budgets or other hosts is refused', async () => {
    const bob = key('bob');
    const root = hostRoot(bed, 'h2', 2);
    writeFileSync(join(root, 'etc', 'approvers'), `bob hitless-max-gap-ms=5,hitless-hosts="h2,h3" ${bob.pub}\n`);
    const a = spawnAgent(root);
    const info = await a.client.request(agent.hostStart, { release: '1.0.0' });
    const budget = { max_gap_ms: 10, max_lost: 0 };
    const facts: ApprovalFacts = { campaign: 'c-2', kind: 'auto', host: info.host, vms: [], release: '1.1.0', mode: 'handoff', decision: 'approve', reason: 'auto', budget, decided: new Date().toISOString(), context: contextDigest(budget) };
    await assert.rejects(a.client.request(agent.upgradePrepare, { release: '1.1.0', campaign: 'c-2', approve: { auto: budget } }), /carries no signed approval/);
    await assert.rejects(
      a.client.request(agent.upgradePrepare, { release: '1.1.0', campaign: 'c-2', approve: { auto: budget }, approval: await signApproval(facts, bob.file) }),
      /bob .* may approve a gap of 5 ms at most, not 10/,
    );
    const small = { max_gap_ms: 5, max_lost: 0 };
    // the signed budget must be the one the request runs with
    await assert.rejects(
      a.client.request(agent.upgradePrepare, { release: '1.1.0', campaign: 'c-2', approve: { auto: budget }, approval: await signApproval({ ...facts, budget: small }, bob.file) }),
      /approves the budget .*"max_gap_ms":5/,
    );
    assert.equal((await a.client.request(agent.upgradeStatus, {})).state, 'idle');
    const st = await a.client.request(agent.upgradePrepare, { release: '1.1.0', campaign: 'c-2', approve: { auto: small }, approval: await signApproval({ ...facts, budget: small }, bob.file) });
    assert.equal(st.state, 'switching');
  });

  test('a journal with a line edited, one removed, or its tail cut is reported broken, naming the line', () => {
    const lines = ['{"type":"start","gen":"g1","release":"1.0.0","seq":1,"t":"2026-11-01T00:00:00.000Z"}'];
    // a journal written by an older agent (unchained) then by this one
    mkdirSync(join(bed.dir, 'h4'), { recursive: true });
    const path = join(bed.dir, 'h4', 'journal.jsonl');
    writeFileSync(path, `${lines[0]}\n`);
    {
      const j = new Journal(path, { user: 'ops', from: '192.0.2.1 port 50000' });
      for (let i = 0; i < 5; i++) j.append({ type: 'switch', vm: `v${i}`, to: 'g2' });
      const all = j.lines();
      const ok = verifyChain(all, sha256hex);
      assert.equal(ok.intact, true);
      assert.equal(ok.unchained, 1);
      assert.deepEqual(ok.head?.seq, 6);

      const edited = all.map((l, i) => (i === 3 ? l.replace('"v2"', '"v9"') : l));
      assert.deepEqual([verifyChain(edited, sha256hex).problem?.line, verifyChain(edited, sha256hex).problem?.why], [4, 'its hash does not match its text: the line was edited']);
      const removed = all.filter((_, i) => i !== 2);
      assert.match(verifyChain(removed, sha256hex).problem!.why, /a line was removed/);
      assert.equal(verifyChain(removed, sha256hex).problem!.line, 3);
      const cut = all.slice(0, -2);
      assert.equal(verifyChain(cut, sha256hex).intact, true, 'a cut tail alone leaves a valid chain');
      assert.match(verifyChain(cut, sha256hex, ok.head).problem!.why, /ends at seq 4, but seq 6 was seen before: its tail was cut/);
      assert.equal(verifyChain(all, sha256hex, ok.head).intact, true);
      // a torn last line (a crash mid-write) is cut when the journal is opened, and the chain goes on
      writeFileSync(path, `${all.join('\n')}\n{"type":"swi`);
      const again = new Journal(path);
      again.append({ type: 'commit' });
      assert.equal(verifyChain(again.lines(), sha256hex).intact, true);
    }
  });

  test('an approvers file that does not parse is refused with its line; OpenSSH options pass through, ours are taken out', () => {
    const k = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOkWkTd3ZQ3o2YbcAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
    const p = parseApprovers(`alice valid-after="20260101",hitless-hosts="a,b",hitless-max-lost=0 ${k} alice@laptop\n`, 'approvers');
    assert.equal(p.allowedSigners, `alice valid-after="20260101" ${k} alice@laptop\n`);
    assert.deepEqual([p.approvers[0]!.hosts, p.approvers[0]!.max_lost], [['a', 'b'], 0]);
    assert.throws(() => parseApprovers(`\nalice hitless-role=admin ${k}\n`, 'approvers'), /approvers:2: unknown option hitless-role/);
    assert.throws(() => parseApprovers('alice AAAA\n', 'approvers'), /approvers:1: not "principals \[options\] keytype key"/);
  });
});
