// Brings up a 2-host lab fleet (1.0.0 active, 1.1.0 installed) and the console in browser mode
// on it, with its own state directory and known_hosts; returns the teardown.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { base, fleetFile, labDir, PREFIX, repo, stateDir, SUBNET, urlFile, VMS } from './lab.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export default async function globalSetup(): Promise<() => Promise<void>> {
  const lab = (...args: string[]) => execFileSync(join(repo, 'lab/lab'), [...args, '--dir', labDir, '--prefix', PREFIX], { stdio: ['ignore', 'inherit', 'inherit'] });
  lab('down');
  rmSync(base, { recursive: true, force: true });
  mkdirSync(join(repo, 'e2e/results'), { recursive: true });
  execFileSync('node', ['--import', 'tsx', 'scripts/build-app.ts'], { cwd: repo, stdio: 'inherit' });
  lab('up', '--hosts', '2', '--vms', String(VMS), '--subnet', String(SUBNET));
  const proc = spawn(join(repo, 'app/bin/hitless-console'), ['--state', stateDir, '--fleet', fleetFile, '--known-hosts', join(stateDir, 'known_hosts'), '--ssh-config', '/dev/null', '--operator', 'e2e-operator', '--url-file', urlFile], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  for (let i = 0; i < 200 && !existsSync(urlFile); i++) await sleep(100);
  if (!existsSync(urlFile)) throw new Error('hitless-console did not start (no URL file)');
  process.env.HITLESS_CONSOLE_URL = readFileSync(urlFile, 'utf8').trim();
  return async () => {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    lab('down');
  };
}
