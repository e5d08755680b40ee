// The operator's job on a host that runs stock OVS-DPDK (DESIGN §12), in Chromium through the
// console's browser mode: a lab host of its own whose releases are OVS-DPDK generations, the
// fleet and host views naming the datapath, a campaign with an approval per VM, and the
// report's figures checked against the host's own journal.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test, type Page } from '@playwright/test';
import { agent } from '../protocol/agent.js';
import type { Report } from '../protocol/console.js';
import { round, type Measurement } from '../protocol/measure.js';
import { openAgentSession } from '../app/src/core/ssh/agentSession.js';
import { Fleet } from '../protocol/files.js';
import { base, repo } from './lab.js';

test.describe.configure({ mode: 'serial' });

const dir = join(base, 'ovs');
const labDir = join(dir, 'lab');
const stateDir = join(dir, 'console');
const urlFile = join(dir, 'console.url');
const PREFIX = 'hlq';
const shots = join(repo, 'e2e/results');
const lab = (...args: string[]) => execFileSync(join(repo, 'lab/lab'), [...args, '--dir', labDir, '--prefix', PREFIX], { stdio: ['ignore', 'inherit', 'inherit'] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let fleet: Fleet;
let consoleProc: ChildProcess;
let page: Page;

test.beforeAll(async ({ browser }) => {
  lab('down');
  rmSync(dir, { recursive: true, force: true });
  lab('up', '--hosts', '1', '--vms', '2', '--datapath', 'ovs', '--subnet', '205');
  fleet = Fleet.parse(JSON.parse(readFileSync(join(labDir, 'fleet.json'), 'utf8')));
  consoleProc = spawn(
    join(repo, 'app/bin/hitless-console'),
    ['--state', stateDir, '--fleet', join(labDir, 'fleet.json'), '--known-hosts', join(stateDir, 'known_hosts'), '--ssh-config', '/dev/null', '--operator', 'e2e-ovs', '--url-file', urlFile],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  for (let i = 0; i < 200 && !existsSync(urlFile); i++) await sleep(100);
  page = await browser.newPage();
  await page.goto(readFileSync(urlFile, 'utf8').trim());
});

test.afterAll(async () => {
  consoleProc.kill('SIGTERM');
  await new Promise((r) => consoleProc.once('exit', r));
  lab('down');
});

test('an OVS-DPDK host: the fleet and host views say what runs it; a campaign with an approval per VM moves both VMs, and the report is the agent\'s own record', async () => {
  await page.getByTestId('nav-fleet').click();
  await expect(page.getByTestId('host-conn-h1')).toHaveText(/^connected/, { timeout: 60_000 });
  await expect(page.getByTestId('host-row-h1')).toContainText('1.0.0');
  await expect(page.getByTestId('host-row-h1')).toContainText('OVS-DPDK');
  await page.getByTestId('host-link-h1').click();
  await expect(page.getByTestId('gen-active-kind')).toContainText('ovs-dpdk');

  await page.getByTestId('nav-wizard').click();
  await page.getByTestId('wiz-host-h1').check();
  await page.getByTestId('wiz-release').selectOption('1.1.0');
  await page.getByTestId('wiz-approval-each-vm').check();
  // a generous budget: this test is about the flow; OVS-DPDK's figures belong to bench/
  await page.getByTestId('wiz-gap').fill('5000');
  await page.getByTestId('wiz-lost').fill('100000');
  await page.getByTestId('wiz-preview').click();
  await expect(page.getByTestId('plan-wave-0')).toContainText('h1');
  await page.getByTestId('wiz-start').click();
  await expect(page.getByTestId('camp-state')).toContainText('running');

  for (const vm of ['h1-v1', 'h1-v2']) {
    await page.getByTestId('nav-approvals').click();
    const row = page.getByTestId(`approval-h1-${vm}`);
    await expect(row).toBeVisible({ timeout: 120_000 });
    await row.click();
    await expect(page.getByTestId('approval-context')).toContainText(vm);
    await page.getByTestId('approval-reason').fill(`${vm} onto OVS-DPDK 1.1.0`);
    await page.getByTestId('approval-reason').press('Enter');
    await expect(row).toBeHidden();
  }
  await page.getByTestId('nav-campaign').click();
  await expect(page.getByTestId('camp-state')).toContainText('done', { timeout: 120_000 });

  await page.getByTestId('nav-reports').click();
  await expect(page.getByTestId('report-upgraded')).toBeVisible();
  await page.screenshot({ path: join(shots, 'ovs-report.png'), fullPage: true });
  const dl = page.waitForEvent('download');
  await page.getByTestId('export-json').click();
  const rep = JSON.parse(readFileSync((await (await dl).path())!, 'utf8')) as Report & { campaign: { hosts: { host: string; vms: { vm: string; measurement: Measurement | null }[] }[] } };
  const h = fleet.hosts[0]!;
  const s = await openAgentSession('h1', `${h.agent} --stdio`, { sshConfig: fleet.ssh_config });
  try {
    const hist = await s.agent.request(agent.upgradeHistory, {});
    const st = await s.agent.request(agent.upgradeStatus, {});
    expect([st.state, st.active?.release, st.active?.kind]).toEqual(['idle', '1.1.0', 'ovs-dpdk']);
    let compared = 0;
    for (const v of rep.campaign.hosts[0]!.vms) {
      const own = hist.switches.find((x) => x.vm === v.vm && x.measurement?.t_ns === v.measurement?.t_ns);
      expect(own, `${v.vm}: the agent's journal has this switch`).toBeTruthy();
      expect(v.measurement).toEqual(own!.measurement);
      const line = rep.vms.find((l) => l.vm === v.vm)!;
      expect([line.lost, line.break_ms, line.window_us]).toEqual([own!.measurement!.lost, round(own!.measurement!.break_ms), round(own!.measurement!.window_us, 2)]);
      compared++;
    }
    expect(compared).toBe(2);
    expect(rep.summary.lost).toBe(rep.vms.reduce((n, v) => n + (v.lost ?? 0), 0));
  } finally {
    s.close();
  }
});
