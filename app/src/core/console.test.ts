// The console core on a real lab fleet (namespaces, sshd, agents, datapaths, probe VMs): the
// campaign controls an operator relies on beyond the e2e walk-through — wave approvals with
// pause and resume, abort leaving nothing half done, a console restart mid-campaign resumed
// from where the hosts are, a committed host rolled back (downgraded) hitlessly, and an
// unreachable host blocking a campaign instead of being skipped.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { agent } from '../../../protocol/agent.js';
import type { Approval, Campaign, CampaignSpec, InstallResult, Plan, RollbackResult } from '../../../protocol/console.js';
import { AGENT_VERSION } from '../../../agent/src/host/server.js';
import { ConsoleCore } from './console.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const dir = mkdtempSync(join(tmpdir(), 'hl-console-'));
const labDir = join(dir, 'lab');
const lab = (...args: string[]) => execFileSync(join(repo, 'lab/lab'), [...args, '--dir', labDir, '--prefix', 'hlq'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false> | T | null | undefined | false, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function core(): ConsoleCore {
  return new ConsoleCore({ stateDir: join(dir, 'state'), sshConfig: '/dev/null', knownHosts: join(dir, 'known_hosts'), operator: 'ana', approvers: null, transport: 'browser', pdf: null, secrets: null, releaseLibrary: join(repo, 'dist') });
}

const spec = (over: Partial<CampaignSpec>): CampaignSpec => ({ hosts: ['h1', 'h2'], release: '1.1.0', canary: 'h1', batch: 1, approval: 'each-vm', budget: { max_gap_ms: 200, max_lost: 0 }, mode: 'handoff', host_modes: {}, ...over });

describe('console core on a lab fleet', () => {
  let c: ConsoleCore;
  const call = <T>(m: string, p: unknown) => c.handle(m, p) as Promise<T>;
  const approvals = async () => (await call<{ approvals: Approval[] }>('approval/list', {})).approvals;
  const campaign = async (id: string) => (await call<{ campaigns: Campaign[] }>('campaign/list', {})).campaigns.find((x) => x.id === id)!;
  const status = (h: string) => c.conns.get(h)!.request(agent.upgradeStatus, {});
  const connected = () => until('both hosts connected', () => c.rows().every((r) => r.conn === 'connected'));

  before(async () => {
    lab('up', '--hosts', '2', '--vms', '2', '--subnet', '205');
    c = core();
    await call('fleet/import', { from: 'fleet-file', path: join(labDir, 'fleet.json') });
    await connected();
  });
  after(() => {
    c.close();
    lab('down');
  });

  test('each-wave: one approval per wave; a paused campaign holds before the next host; resume finishes it', async () => {
    const start = await call<Campaign>('campaign/start', spec({ approval: 'each-wave' }));
    const wave0 = await until('the canary wave approval', async () => (await approvals()).find((a) => a.kind === 'wave' && a.wave === 0));
    assert.deepEqual(wave0.moves, [{ host: 'h1', vms: ['h1-v1', 'h1-v2'] }]);
    await call('campaign/control', { id: start.id, action: 'pause', scope: { level: 'campaign' } });
    await call('approval/decide', { id: wave0.id, decision: 'approve', reason: 'maintenance window open' });
    await sleep(1500);
    assert.equal((await status('h1')).state, 'idle', 'paused: nothing started on the canary');
    assert.equal((await campaign(start.id)).state, 'paused');
    await call('campaign/control', { id: start.id, action: 'resume', scope: { level: 'campaign' } });
    const wave1 = await until('wave 1 approval', async () => (await approvals()).find((a) => a.kind === 'wave' && a.wave === 1));
    assert.equal(wave1.canary?.host, 'h1');
    assert.equal(wave1.canary?.vms, 2, 'the approver sees what the canary measured');
    assert.equal(wave1.canary?.lost, 0);
    await call('approval/decide', { id: wave1.id, decision: 'approve', reason: 'canary clean' });
    const done = await until('campaign done', async () => ((await campaign(start.id)).state === 'done' ? campaign(start.id) : null));
    assert.deepEqual(done.hosts.map((h) => [h.host, h.state]), [['h1', 'committed'], ['h2', 'committed']]);
    assert.ok(done.hosts.every((h) => h.vms.every((v) => v.state === 'moved' && v.measurement !== null)));
    assert.deepEqual(done.decisions.map((d) => [d.kind, d.wave_name, d.decision, d.by, d.reason]), [['wave', 'canary', 'approve', 'ana', 'maintenance window open'], ['wave', 'wave 1', 'approve', 'ana', 'canary clean']]);
    for (const h of ['h1', 'h2']) assert.equal((await status(h)).active?.release, '1.1.0');
  });

  test('rollback of a committed host is a hitless downgrade to the release it ran before, verified with traffic', async () => {
    const plan = await call<{ steps: { host: string; action: string; to: string | null }[]; blockers: string[] }>('rollback/preview', { level: 'host', host: 'h2' });
    assert.deepEqual(plan.steps.map((s) => [s.host, s.action, s.to]), [['h2', 'downgrade', '1.0.0']]);
    assert.deepEqual((await call<{ blockers: string[] }>('rollback/preview', { level: 'vm', host: 'h2', vm: 'h2-v1' })).blockers, [
      'h2 is committed on 1.1.0: one VM alone cannot go back to 1.0.0 (the old generation is stopped); roll back the host',
    ]);
    const r = await call<RollbackResult>('rollback/run', { scope: { level: 'host', host: 'h2' }, reason: 'test the way back' });
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.deepEqual(r.verify.map((v) => [v.vm, v.release, v.traffic]), [['h2-v1', '1.0.0', true], ['h2-v2', '1.0.0', true]]);
    // the lab's releases share a process core: the agent took the old stage back in place
    const back = await status('h2');
    assert.equal(back.active?.release, '1.0.0');
    assert.equal(back.mode, 'swap');
  });

  test('abort mid-host moves its VMs back and stops the campaign; nothing is left half done', async () => {
    // h1 is on 1.1.0, h2 on 1.0.0: take h2 to 1.1.0 and abort after its first VM
    const start = await call<Campaign>('campaign/start', spec({ hosts: ['h2'], canary: null }));
    const a1 = await until('first VM approval', async () => (await approvals()).find((a) => a.vm === 'h2-v1'));
    await call('approval/decide', { id: a1.id, decision: 'approve', reason: 'go' });
    await until('second VM approval', async () => (await approvals()).find((a) => a.vm === 'h2-v2'));
    assert.equal((await status('h2')).vms.find((v) => v.vm === 'h2-v1')!.moved, true);
    const aborted = await call<Campaign>('campaign/control', { id: start.id, action: 'abort', scope: { level: 'campaign' } });
    assert.equal(aborted.state, 'aborted');
    assert.equal(aborted.hosts[0]!.state, 'aborted');
    assert.deepEqual(await approvals(), [], 'the pending approval went with the campaign');
    const st = await status('h2');
    assert.equal(st.state, 'idle');
    assert.equal(st.active?.release, '1.0.0');
    assert.equal(st.last_outcome, 'aborted');
    assert.ok(st.vms.every((v) => v.serving === st.active!.gen && v.connected));
  });

  test('a console restarted mid-campaign shows it interrupted; resume continues from where the host is', async () => {
    const start = await call<Campaign>('campaign/start', spec({ hosts: ['h2'], canary: null }));
    const a1 = await until('first VM approval', async () => (await approvals()).find((a) => a.vm === 'h2-v1'));
    await call('approval/decide', { id: a1.id, decision: 'approve', reason: 'go' });
    await until('second VM approval', async () => (await approvals()).find((a) => a.vm === 'h2-v2'));
    c.close(); // the operator's laptop closes; the host keeps its state
    c = core();
    await connected();
    const again = await campaign(start.id);
    assert.equal(again.state, 'interrupted');
    assert.equal((await status('h2')).state, 'switching');
    await call('campaign/control', { id: start.id, action: 'resume', scope: { level: 'campaign' } });
    const a2 = await until('the remaining VM asked again', async () => (await approvals()).find((a) => a.vm === 'h2-v2'));
    assert.equal((await approvals()).some((a) => a.vm === 'h2-v1'), false, 'the VM that moved is not asked again');
    await call('approval/decide', { id: a2.id, decision: 'approve', reason: 'resumed' });
    const done = await until('campaign done', async () => ((await campaign(start.id)).state === 'done' ? campaign(start.id) : null));
    assert.equal(done.hosts[0]!.state, 'committed');
    assert.equal((await status('h2')).active?.release, '1.1.0');
  });

  test("the agent upgraded mid-campaign: refused while the campaign drives the host, installed once it is paused; the new agent takes over from the host's journal and the campaign finishes with 0 lost", async () => {
    // h1 is on 1.1.0: take it back to 1.0.0 VM by VM, and replace its agent after the first VM
    const start = await call<Campaign>('campaign/start', spec({ hosts: ['h1'], canary: null, release: '1.0.0' }));
    const a1 = await until('first VM approval', async () => (await approvals()).find((a) => a.vm === 'h1-v1'));
    await call('approval/decide', { id: a1.id, decision: 'approve', reason: 'go' });
    await until('second VM approval', async () => (await approvals()).find((a) => a.vm === 'h1-v2'));
    const pkgDir = join(labDir, 'hosts', 'h1', 'root', 'pkg');
    const was = readlinkSync(pkgDir);
    let r = await call<InstallResult>('agent/install', { hosts: ['h1'] });
    assert.equal(r.hosts[0]!.installed, false);
    assert.match(r.hosts[0]!.error!, new RegExp(`campaign ${start.id} is running on h1: pause it \\(or the host\\) first`));
    assert.equal(readlinkSync(pkgDir), was, 'nothing installed');
    await call('campaign/control', { id: start.id, action: 'pause', scope: { level: 'campaign' } });
    r = await call<InstallResult>('agent/install', { hosts: ['h1'] });
    assert.equal(r.hosts[0]!.error, null);
    assert.equal(r.hosts[0]!.installed, true);
    assert.equal(r.hosts[0]!.agent_version, AGENT_VERSION);
    assert.notEqual(readlinkSync(pkgDir), was, 'a new package directory');
    // the new agent knows where the upgrade stands: one VM moved, one to go
    const mid = await status('h1');
    assert.equal(mid.state, 'switching');
    assert.deepEqual(mid.vms.map((v) => [v.vm, v.moved]), [['h1-v1', true], ['h1-v2', false]]);
    await call('campaign/control', { id: start.id, action: 'resume', scope: { level: 'campaign' } });
    const a2 = await until('the second VM asked', async () => (await approvals()).find((a) => a.vm === 'h1-v2'));
    await call('approval/decide', { id: a2.id, decision: 'approve', reason: 'after the agent upgrade' });
    const done = await until('campaign done', async () => ((await campaign(start.id)).state === 'done' ? campaign(start.id) : null));
    assert.equal(done.hosts[0]!.state, 'committed');
    assert.deepEqual(done.hosts[0]!.vms.map((v) => [v.vm, v.state, v.measurement?.lost]), [['h1-v1', 'moved', 0], ['h1-v2', 'moved', 0]]);
    assert.equal(done.hosts[0]!.loss?.lost, 0, 'the witness counted the whole upgrade, across both agents');
    assert.equal((await status('h1')).active?.release, '1.0.0');
  });

  test('an unreachable host is shown as such and blocks a campaign that includes it', async () => {
    await call('fleet/add', { name: 'h9', ssh: { host: '198.18.205.99', port: 22, user: 'root', identity: join(labDir, 'client', 'id_ed25519') }, agent_command: 'hitless-agent --stdio', group: null });
    await until('h9 unreachable', () => c.rows().find((r) => r.name === 'h9' && r.conn === 'unreachable'), 30_000);
    const row = c.rows().find((r) => r.name === 'h9')!;
    assert.ok(row.problem && row.next_retry_ms !== null, 'the problem and the next retry are shown');
    const plan = await call<Plan>('campaign/preview', spec({ hosts: ['h1', 'h9'], release: '1.0.0', canary: 'h1' }));
    assert.equal(plan.blockers.length, 1);
    assert.match(plan.blockers[0]!, /^h9 is not connected \(unreachable: .+\): reconnect it or leave it out of the campaign$/);
    await assert.rejects(call('campaign/start', spec({ hosts: ['h1', 'h9'], release: '1.0.0', canary: 'h1' })), /h9 is not connected/);
    const audit = await call<{ ok: boolean; entries: number }>('audit/verify', {});
    assert.equal(audit.ok, true);
  });
});
