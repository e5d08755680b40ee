// The operator's job, end to end, in Chromium against the lab fleet (2 hosts x 3 probe VMs,
// 1.0.0 active, 1.1.0 installed), through the console's browser mode: a canary campaign with
// an approval per VM, the live chart moving, a denied VM staying on the old generation, a
// guided rollback of that host, the report's figures checked against the agents' own record,
// the audit chain, h2's agent removed and put back by Install agent, a second campaign moving h2
// by an in-place stage swap on that agent, and SSH host keys (a
// changed key blocks, an unknown one asks).
import { execFileSync } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { expect, test, type Page } from '@playwright/test';
import { agent } from '../protocol/agent.js';
import type { Report } from '../protocol/console.js';
import { round, type Measurement } from '../protocol/measure.js';
import { fmtFrames, fmtMs } from '../app/src/renderer/format.js';
import { openAgentSession } from '../app/src/core/ssh/agentSession.js';
import { Fleet } from '../protocol/files.js';
import { consoleUrl, fleetFile, repo, stateDir, VMS } from './lab.js';

test.describe.configure({ mode: 'serial' });

const shots = join(repo, 'e2e/results');
let fleet: Fleet; // read once the global setup has brought the lab up
const vms = (h: string) => Array.from({ length: VMS }, (_, i) => `${h}-v${i + 1}`);
let page: Page;

/** What a host's agent itself reports (not through the console). */
async function fromAgent<T>(host: string, fn: (a: Awaited<ReturnType<typeof openAgentSession>>['agent']) => Promise<T>): Promise<T> {
  const h = fleet.hosts.find((x) => x.name === host)!;
  const s = await openAgentSession(host, `${h.agent} --stdio`, { sshConfig: fleet.ssh_config });
  try {
    return await fn(s.agent);
  } finally {
    s.close();
  }
}

async function nav(screen: string): Promise<void> {
  await page.getByTestId(`nav-${screen}`).click();
}

async function decide(host: string, vm: string, decision: 'approve' | 'deny', reason: string): Promise<void> {
  await nav('approvals');
  const row = page.getByTestId(`approval-${host}-${vm}`);
  await expect(row).toBeVisible({ timeout: 60_000 });
  await row.click();
  await expect(page.getByTestId('approval-context')).toContainText(vm);
  await page.getByTestId('approval-reason').fill(reason);
  if (decision === 'approve') await page.getByTestId('approval-reason').press('Enter'); // the keyboard path
  else await page.getByTestId('deny').click();
  await expect(row).toBeHidden();
}

test.beforeAll(async ({ browser }) => {
  fleet = Fleet.parse(JSON.parse(readFileSync(fleetFile, 'utf8')));
  page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(process.env.HITLESS_CONSOLE_URL ?? consoleUrl());
});

test('fleet: both lab hosts are reachable over SSH, on 1.0.0 with their VMs', async () => {
  await nav('fleet');
  for (const h of ['h1', 'h2']) {
    await expect(page.getByTestId(`host-conn-${h}`)).toHaveText(/^connected/);
    await expect(page.getByTestId(`host-row-${h}`)).toContainText('1.0.0');
  }
  await expect(page.getByTestId('session-transport')).toContainText('browser');
  await page.getByTestId('fleet-filter').fill('h2');
  await expect(page.getByTestId('host-row-h1')).toBeHidden();
  await page.getByTestId('fleet-filter').fill('');
  await page.screenshot({ path: join(shots, 'fleet.png'), fullPage: true });
});

test("a host's releases: one from the console's library previewed (what is copied, what runs), uploaded over SSH and installed by the host's agent, which lists it", async () => {
  await nav('fleet');
  await page.getByTestId('host-link-h1').click();
  await page.getByTestId('host-releases-open').click();
  await expect(page.getByTestId('release-current-h1')).toHaveText('installed: 1.0.0, 1.1.0');
  await expect(page.getByTestId('release-file')).toContainText('1.2.0 (hitless-dp)');
  await page.getByTestId('release-preview').click();
  const lines = page.getByTestId('release-preview-lines');
  await expect(lines).toContainText(/release 1\.2\.0 \(hitless-dp\) from hitless-release-1\.2\.0\.tar: \d+ bytes, sha256 [0-9a-f]{64}/);
  await expect(lines).toContainText("checks the signature against the host's release-signers");
  await page.getByTestId('release-go').click();
  await expect(page.getByTestId('release-ok-h1')).toHaveText(/^release 1\.2\.0 signed by \S+: installed$/, { timeout: 30_000 });
  await expect(page.getByTestId('release-progress-h1')).toHaveText(/^100% of \d+\.\d MB sent$/);
  await expect(page.getByTestId('release-current-h1')).toHaveText('installed: 1.0.0, 1.1.0, 1.2.0');
  await page.screenshot({ path: join(shots, 'release-upload.png'), fullPage: true });
  // the host's own word, not the console's
  const listed = await fromAgent('h1', (a) => a.request(agent.releaseList, {}));
  expect(listed.releases.map((r) => r.version)).toEqual(['1.0.0', '1.1.0', '1.2.0']);
  await page.getByTestId('release-close').click();
});

test('campaign: preview shows the canary then the next wave, with the budget; start', async () => {
  await nav('wizard');
  await page.getByTestId('wiz-host-h1').check();
  await page.getByTestId('wiz-host-h2').check();
  await page.getByTestId('wiz-release').selectOption('1.1.0');
  await page.getByTestId('wiz-canary').selectOption('h1');
  await page.getByTestId('wiz-batch').fill('1');
  await page.getByTestId('wiz-approval-each-vm').check();
  // a generous break budget: this test is about the flow; break figures belong to bench/
  await page.getByTestId('wiz-gap').fill('200');
  await page.getByTestId('wiz-lost').fill('0');
  await page.getByTestId('wiz-preview').click();
  await expect(page.getByTestId('plan-wave-0')).toContainText('canary');
  await expect(page.getByTestId('plan-wave-0')).toContainText('h1');
  await expect(page.getByTestId('plan-wave-1')).toContainText('h2');
  await expect(page.getByTestId('plan-notes')).toContainText('200 ms break and 0 lost frames');
  await page.getByTestId('wiz-start').click();
  await expect(page.getByTestId('camp-state')).toContainText('running');
});

test('canary: each VM waits for approval; approving one by one moves it, and the live chart moves', async () => {
  await expect(page.getByTestId('nav-approvals-count')).toHaveText('1', { timeout: 60_000 });
  await nav('approvals');
  await expect(page.getByTestId('approval-context')).toContainText('200');
  await page.screenshot({ path: join(shots, 'approvals.png'), fullPage: true });
  for (const vm of vms('h1')) await decide('h1', vm, 'approve', `canary ${vm}: within budget, looks right`);

  await nav('live');
  await page.getByTestId('live-host').selectOption('h1');
  const chart = page.getByTestId('chart-h1-v1');
  await expect(chart).toBeVisible();
  const before = Number(await chart.getAttribute('data-samples'));
  await expect.poll(async () => Number(await chart.getAttribute('data-samples')), { timeout: 20_000 }).toBeGreaterThan(before + 1);
  await expect.poll(async () => Number(await chart.getAttribute('data-marks'))).toBeGreaterThanOrEqual(1);
  await page.screenshot({ path: join(shots, 'live.png'), fullPage: true });
});

test('wave 1: a denied VM stays on the old generation, and its host is held, not committed', async () => {
  await decide('h2', 'h2-v1', 'approve', 'canary clean');
  await decide('h2', 'h2-v2', 'deny', 'tenant change freeze until Monday');
  await decide('h2', 'h2-v3', 'approve', 'canary clean');
  await nav('campaign');
  await expect(page.getByTestId('camp-state')).toContainText('done', { timeout: 60_000 });
  await expect(page.getByTestId('camp-host-h1')).toContainText('committed');
  await expect(page.getByTestId('camp-host-h2')).toContainText('held');

  await nav('fleet');
  await page.getByTestId('host-link-h2').click();
  await expect(page.getByTestId('vm-serving-h2-v2')).toContainText('1.0.0');
  await expect(page.getByTestId('vm-serving-h2-v1')).toContainText('1.1.0');
  // the host agrees: h2-v2 is served by the old (active) generation, the others by the new one
  const st = await fromAgent('h2', (a) => a.request(agent.upgradeStatus, {}));
  expect(st.state).toBe('switching');
  expect(st.vms.find((v) => v.vm === 'h2-v2')!.serving).toBe(st.active!.gen);
  expect(st.vms.find((v) => v.vm === 'h2-v1')!.serving).toBe(st.target!.gen);
});

test('a crash mid-upgrade: h2\'s old generation killed (kill -9), its VM fails over without a link event; the host view shows the failover and the standby its agent restored', async () => {
  const h = fleet.hosts.find((x) => x.name === 'h2')!;
  const dead = (await fromAgent('h2', (a) => a.request(agent.upgradeStatus, {}))).active!.gen;
  process.kill(Number(readFileSync(join(h.root, 'run', `gen-${dead}`, 'dp.pid'), 'utf8').trim()), 'SIGKILL');
  await nav('fleet');
  await page.getByTestId('host-link-h2').click();
  const row = page.getByTestId(`failover-${dead}`);
  await expect(row).toContainText(/h2-v2 → 1\.1\.0-/, { timeout: 60_000 });
  await expect(row).toContainText(/1\.0\.0-\d+ after/, { timeout: 60_000 });
  await expect(row).toContainText('none'); // no link went down
  await expect(page.getByTestId('host-exposed')).toBeHidden();
  await expect(page.getByTestId('host-health')).not.toContainText('exposed', { timeout: 10_000 });
  await page.screenshot({ path: join(shots, 'failover.png'), fullPage: true });
  const st = await fromAgent('h2', (a) => a.request(agent.upgradeStatus, {}));
  const f = st.failovers.at(-1)!;
  expect(f.gen).toBe(dead);
  expect(st.active!.gen).toBe(f.restored!.gen);
  expect(st.active!.release).toBe('1.0.0');
  expect(st.standby).toBe(st.active!.gen);
  expect(st.vms.every((v) => v.serving === st.target!.gen && v.connected)).toBe(true);
  await expect(page.getByTestId('gen-active')).toContainText(st.active!.gen);
});

test('guided rollback of a host: preview, execute, every VM back on 1.0.0 with traffic', async () => {
  await nav('rollback');
  await page.getByTestId('rb-level').selectOption('host');
  await page.getByTestId('rb-host').selectOption('h2');
  await page.getByTestId('rb-preview').click();
  await expect(page.getByTestId('rb-step-h2')).toContainText('h2-v1');
  await expect(page.getByTestId('rb-step-h2')).toContainText('h2-v3');
  await page.getByTestId('rb-reason').fill('h2-v2 denied: keep the host on one release');
  await page.getByTestId('rb-execute').click();
  await page.getByTestId('rb-execute-yes').click();
  await expect(page.getByTestId('rb-result')).toBeVisible({ timeout: 90_000 });
  for (const vm of vms('h2')) {
    const row = page.getByTestId(`rb-verify-h2-${vm}`);
    await expect(row).toContainText('1.0.0');
    await expect(row).toContainText('yes');
  }
  const st = await fromAgent('h2', (a) => a.request(agent.upgradeStatus, {}));
  expect(st.state).toBe('idle');
  expect(st.active!.release).toBe('1.0.0');
  expect(st.last_outcome).toBe('rolled-back');
});

test("report: the exported figures are the agents' own measurements", async () => {
  await nav('reports');
  await expect(page.getByTestId('report-upgraded')).toBeVisible();
  await page.screenshot({ path: join(shots, 'report.png'), fullPage: true });
  const dl = page.waitForEvent('download');
  await page.getByTestId('export-json').click();
  const file = await (await dl).path();
  const rep = JSON.parse(readFileSync(file!, 'utf8')) as Report & { campaign: { hosts: { host: string; vms: { vm: string; measurement: Measurement | null }[] }[] } };
  expect(rep.summary.denied).toBe(1);
  expect(rep.vms.find((v) => v.vm === 'h2-v2')!.reason).toBe('tenant change freeze until Monday');
  let compared = 0;
  for (const host of ['h1', 'h2']) {
    const hist = await fromAgent(host, (a) => a.request(agent.upgradeHistory, {}));
    for (const ch of rep.campaign.hosts.filter((x) => x.host === host))
      for (const v of ch.vms) {
        if (!v.measurement) continue;
        const own = hist.switches.find((s) => s.vm === v.vm && s.measurement?.t_ns === v.measurement!.t_ns);
        expect(own, `${host}/${v.vm}: the agent's journal has this switch`).toBeTruthy();
        expect(v.measurement).toEqual(own!.measurement);
        const line = rep.vms.find((l) => l.host === host && l.vm === v.vm)!;
        const m = own!.measurement!;
        expect(line.window_us).toBe(round(m.window_us, 2));
        expect([line.lost, line.lost_basis, line.dropped, line.within_budget]).toEqual([m.lost, m.lost_basis, m.dropped, m.within_budget]);
        expect(line.break_ms).toBe(round(m.break_ms));
        compared++;
      }
  }
  expect(compared).toBe(5); // 3 on the canary, 2 approved on h2
  // the headline is the rows' own: lost is their sum, the break percentiles are theirs
  expect(rep.summary.lost).toBe(0);
  expect(rep.summary.lost).toBe(rep.vms.reduce((n, v) => n + (v.lost ?? 0), 0));
  expect(rep.summary.break_ms.max).toBe(Math.max(...rep.vms.flatMap((v) => (v.break_ms === null ? [] : [v.break_ms]))));
  // the screen shows the same figures as the export
  await expect(page.getByTestId('report-lost')).toHaveText(`${rep.summary.lost} frames`);
  for (const [id, v] of [['report-p50', rep.summary.break_ms.p50], ['report-p99', rep.summary.break_ms.p99], ['report-max', rep.summary.break_ms.max]] as const)
    await expect(page.getByTestId(id)).toContainText(fmtMs(v));
  for (const v of rep.vms.filter((x) => x.lost !== null)) await expect(page.getByTestId(`report-vm-${v.host}-${v.vm}`)).toContainText(fmtFrames(v.lost));
  // and the CSV: one row per VM, the same lost and break
  const csv = page.waitForEvent('download');
  await page.getByTestId('export-csv').click();
  const [head, ...rows] = readFileSync((await (await csv).path())!, 'utf8').trim().split('\n').map((l) => l.split(',').map((c) => c.replace(/^"|"$/g, '')));
  expect(head).toContain('window_us');
  expect(rows.length).toBe(rep.vms.length);
  for (const r of rows) {
    const v = rep.vms.find((x) => x.host === r[head!.indexOf('host')] && x.vm === r[head!.indexOf('vm')])!;
    expect([r[head!.indexOf('lost')], r[head!.indexOf('break_ms')]]).toEqual([String(v.lost ?? ''), String(v.break_ms ?? '')]);
  }
  const pdf = page.waitForEvent('download');
  await page.getByTestId('export-pdf').click();
  expect(readFileSync((await (await pdf).path())!).subarray(0, 5).toString()).toBe('%PDF-');
});

test('audit: every approval and denial is recorded with its reason, and the chain verifies', async () => {
  await nav('audit');
  await expect(page.getByTestId('audit-table')).toContainText('tenant change freeze until Monday');
  await page.getByTestId('audit-verify').click();
  await expect(page.getByTestId('audit-result')).toContainText('intact');
  // the hosts' own journals: every approval was signed and verified there
  await page.getByTestId('host-journals-verify').click();
  await expect(page.getByTestId('host-journal-h1-verdict')).toHaveText('intact');
  await expect(page.getByTestId('host-journal-h1')).not.toContainText('not verified there');
  // a line of h1's journal edited on the host: the console says where the chain breaks
  const journal = join(fleet.hosts.find((h) => h.name === 'h1')!.root, 'var', 'journal.jsonl');
  const text = readFileSync(journal, 'utf8');
  try {
    writeFileSync(journal, text.replace(/"type":"approval"/, '"type":"approva1"'));
    await page.getByTestId('host-journals-verify').click();
    await expect(page.getByTestId('host-journal-h1-verdict')).toHaveText(/^BROKEN at line \d+ \(seq \d+\): its hash does not match its text: the line was edited$/);
    await page.screenshot({ path: join(shots, 'host-journals.png'), fullPage: true });
  } finally {
    writeFileSync(journal, text);
  }
  await page.getByTestId('host-journals-verify').click();
  await expect(page.getByTestId('host-journal-h1-verdict')).toHaveText('intact');
});

test("Install agent: h2's agent gone (its package removed and its process killed), the console says it is not installed; selected in the fleet table, Install agent puts the host package back over SSH with its progress, and the agent answers; the next campaign runs on it", async () => {
  const h2 = fleet.hosts.find((h) => h.name === 'h2')!;
  // the host has sshd and its datapath (the agent is not on the packet path) but no agent
  for (const n of readdirSync(dirname(h2.package_dir!))) if (n === 'pkg' || n.startsWith('pkg.')) rmSync(join(dirname(h2.package_dir!), n), { recursive: true, force: true });
  execFileSync('pkill', ['-f', `${h2.package_dir}/usr/bin/hitless-agent`]);
  await nav('fleet');
  await expect(page.getByTestId('host-conn-h2')).toContainText('the agent is not installed on h2', { timeout: 30_000 });
  await page.getByTestId('host-select-h2').check();
  await expect(page.getByTestId('fleet-install-agent')).toHaveText('Install agent (1)');
  await page.getByTestId('fleet-install-agent').click();
  await expect(page.getByTestId('agent-install-current-h2')).toHaveText(/^agent not answering/);
  await expect(page.getByTestId('agent-package')).toHaveText(/^hitless-host \S+ \(amd64\)$/);
  await page.getByTestId('agent-install-preview').click();
  const lines = page.getByTestId('agent-install-preview-lines');
  await expect(lines).toContainText(/host package hitless-host \S+ \(amd64\) from hitless-host_\S+\.deb: \d+ bytes, sha256 [0-9a-f]{64}/);
  await expect(lines).toContainText('dpkg --print-architecture is amd64');
  await expect(lines).toContainText(`dpkg -x into a new directory beside ${h2.package_dir}`);
  await page.screenshot({ path: join(shots, 'agent-install.png'), fullPage: true });
  await page.getByTestId('agent-install-go').click();
  await expect(page.getByTestId('agent-install-ok-h2')).toHaveText(/installed; the agent answers, version \d+\.\d+\.\d+$/, { timeout: 60_000 });
  await expect(page.getByTestId('agent-install-progress-h2')).toHaveText(/^100% of \d+\.\d MB sent$/);
  await expect(page.getByTestId('host-conn-h2')).toHaveText('connected');
  await page.getByTestId('agent-install-close').click();
  await page.getByTestId('host-select-h2').uncheck();
  // the agent says how it runs the host's processes: no systemd as PID 1 in the lab
  await page.getByTestId('host-link-h2').click();
  await expect(page.getByTestId('host-supervisor')).toHaveText(/^processes: detached \(/);
  // the host's own word: its agent answers over SSH, with h2's VMs still served as before
  const st = await fromAgent('h2', (a) => a.request(agent.upgradeStatus, {}));
  expect(st.vms.map((v) => v.connected)).toEqual(vms('h2').map(() => true));
});

test("h2's keeper replaced from its host page: the running keeper and the installed one are shown; confirmed, the installed keeper takes every session over (a new pid), the VMs stay connected, and the swap campaign below runs on it", async () => {
  await nav('fleet');
  await page.getByTestId('host-link-h2').click();
  const before = await fromAgent('h2', (a) => a.request(agent.keeperVersions, {}));
  expect(before.running).not.toBeNull();
  await expect(page.getByTestId('host-keeper-running')).toHaveText(`${before.running!.version} (pid ${before.running!.pid}, ${vms('h2').length} sessions)`);
  await expect(page.getByTestId('host-keeper-installed')).toHaveText(before.installed!);
  await page.getByTestId('host-keeper-upgrade').click();
  await expect(page.getByTestId('host-keeper-confirm')).toContainText('the VMs keep forwarding');
  await page.getByTestId('host-keeper-go').click();
  await expect(page.getByTestId('host-keeper-result')).toHaveText(new RegExp(`^keeper \\S+ \\(pid ${before.running!.pid}\\) handed ${vms('h2').length} sessions to \\S+ \\(pid \\d+\\); the VMs' control messages waited \\d+\\.\\d ms$`), { timeout: 60_000 });
  await page.screenshot({ path: join(shots, 'keeper-upgrade.png'), fullPage: true });
  const after = await fromAgent('h2', (a) => a.request(agent.keeperVersions, {}));
  expect(after.running!.pid).not.toBe(before.running!.pid);
  await expect(page.getByTestId('host-keeper-running')).toContainText(`pid ${after.running!.pid}`);
  const st = await fromAgent('h2', (a) => a.request(agent.upgradeStatus, {}));
  expect(st.vms.map((v) => v.connected)).toEqual(vms('h2').map(() => true));
});

test('swap campaign: the agent chooses an in-place stage swap for h2, predicted in microseconds; one approval moves its VMs at once', async () => {
  await nav('wizard');
  await page.getByTestId('wiz-host-h2').check();
  await page.getByTestId('wiz-release').selectOption('1.1.0');
  await page.getByTestId('wiz-approval-each-vm').check();
  await page.getByTestId('wiz-mode-auto').check();
  await page.getByTestId('wiz-gap').fill('200');
  await page.getByTestId('wiz-preview').click();
  await expect(page.getByTestId('plan-mode-h2')).toHaveText('in-place swap');
  await expect(page.getByTestId('plan-break-h2')).toContainText('µs');
  await expect(page.getByTestId('plan-host-h2').getByTestId('plan-option-swap')).toContainText('approval per-host');
  await expect(page.getByTestId('plan-notes')).toContainText('in-place stage swap');
  await page.screenshot({ path: join(shots, 'swap-plan.png'), fullPage: true });
  // the operator overrides h2 to handoff, and the plan follows; then back to the agent's choice
  await page.getByTestId('wiz-hostmode-h2').selectOption('handoff');
  await page.getByTestId('wiz-preview').click();
  await expect(page.getByTestId('plan-mode-h2')).toHaveText('handoff');
  await page.getByTestId('wiz-hostmode-h2').selectOption('');
  await page.getByTestId('wiz-preview').click();
  await expect(page.getByTestId('plan-mode-h2')).toHaveText('in-place swap');
  const gen = (await fromAgent('h2', (a) => a.request(agent.upgradeStatus, {}))).active!.gen;
  await page.getByTestId('wiz-start').click();

  await nav('approvals');
  const row = page.getByTestId('approval-host-h2');
  await expect(row).toBeVisible({ timeout: 60_000 });
  await row.click();
  await expect(page.getByTestId('approval-context')).toContainText('Swap the forwarding stage of h2');
  await expect(page.getByTestId('approval-predicted')).toContainText('in-place stage swap');
  await page.screenshot({ path: join(shots, 'swap-approval.png'), fullPage: true });
  await page.getByTestId('approval-reason').fill('stage-only fix: swap in place');
  await page.getByTestId('approval-reason').press('Enter');
  await expect(row).toBeHidden();
  await nav('campaign');
  await expect(page.getByTestId('camp-state')).toContainText('done', { timeout: 60_000 });
  await expect(page.getByTestId('camp-host-h2')).toContainText('committed');
  // the agent: same generation, 1.1.0's stage on 1.0.0's core, every VM measured as a swap with nothing dropped
  const st = await fromAgent('h2', (a) => a.request(agent.upgradeStatus, {}));
  expect(st.mode).toBe('swap');
  expect(st.active).toEqual({ gen, release: '1.1.0', core: '1.0.0', kind: 'hitless-dp' });
  expect(st.vms.every((v) => v.serving === gen)).toBe(true);
  const hist = await fromAgent('h2', (a) => a.request(agent.upgradeHistory, {}));
  const swaps = hist.switches.filter((x) => x.measurement?.mode === 'swap');
  expect(swaps.map((x) => x.vm).sort()).toEqual(vms('h2'));
  for (const x of swaps) expect([x.measurement!.dropped, x.measurement!.lost]).toEqual([0, 0]);
});

test('host keys: a changed key blocks the host and says why; an unknown key shows its fingerprint and waits', async () => {
  const h1 = fleet.hosts.find((h) => h.name === 'h1')!;
  const h2 = fleet.hosts.find((h) => h.name === 'h2')!;
  // the console's own known_hosts claims another key for h2's address
  const other = join(stateDir, 'other');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
  appendFileSync(join(stateDir, 'known_hosts'), `${h2.address} ${readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`);
  const add = async (name: string, address: string, agentPath: string) => {
    await nav('fleet');
    await page.getByTestId('fleet-add').click();
    await page.getByTestId('add-name').fill(name);
    await page.getByTestId('add-mode').selectOption('address');
    await page.getByTestId('add-host').fill(address);
    await page.getByTestId('add-port').fill('22');
    await page.getByTestId('add-user').fill('root');
    await page.getByTestId('add-identity').fill(fleet.identity);
    await page.getByTestId('add-agent').fill(`${agentPath} --stdio`);
    await page.getByTestId('add-submit').click();
  };
  await add('h2-by-address', h2.address, h2.agent);
  const changed = page.getByTestId('host-conn-h2-by-address');
  await expect(changed).toContainText('host key CHANGED');
  await expect(changed).toContainText('Refusing to connect');
  await page.screenshot({ path: join(shots, 'hostkey-changed.png'), fullPage: true });

  await add('h1-by-address', h1.address, h1.agent);
  const unknown = page.getByTestId('host-conn-h1-by-address');
  await expect(unknown).toContainText('host key unknown');
  // the fingerprint shown is h1's real key (the lab pinned it in its own known_hosts)
  const real = execFileSync('ssh-keygen', ['-lf', fleet.known_hosts], { encoding: 'utf8' })
    .split('\n')
    .find((l) => l.includes(`${h1.address},`) || l.includes(` ${h1.address} `))!
    .split(' ')[1]!;
  await expect(unknown).toContainText(real);
  await page.getByTestId('key-accept-h1-by-address').click();
  await expect(unknown).toHaveText(/^connected/);
  await expect(changed).toContainText('host key CHANGED'); // still blocked: no silent retry
  // remembered (hashed, as OpenSSH's HashKnownHosts does): ssh-keygen finds it
  expect(execFileSync('ssh-keygen', ['-F', h1.address, '-f', join(stateDir, 'known_hosts')], { encoding: 'utf8' })).toContain('ssh-ed25519');
});
