// Brings up a 2-host lab fleet (1.0.0 active, 1.1.0 installed) and the console in browser mode
// on it, with its own state directory and known_hosts; returns the teardown.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { packRelease, signingKey } from '../scripts/package.js';
import { base, fleetFile, labDir, libraryDir, PREFIX, repo, stateDir, SUBNET, urlFile, VMS } from './lab.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export default async function globalSetup(): Promise<() => Promise<void>> {
  const lab = (...args: string[]) => execFileSync(join(repo, 'lab/lab'), [...args, '--dir', labDir, '--prefix', PREFIX], { stdio: ['ignore', 'inherit', 'inherit'] });
  lab('down');
  rmSync(base, { recursive: true, force: true });
  mkdirSync(join(repo, 'e2e/results'), { recursive: true });
  execFileSync('node', ['--import', 'tsx', 'scripts/build-app.ts'], { cwd: repo, stdio: 'inherit' });
  lab('up', '--hosts', '2', '--vms', String(VMS), '--subnet', String(SUBNET));
  // the console's release library: a release 1.2.0 no host has (1.1.0's files, signed with the
  // key make package signs dist/ with, which the lab's hosts trust)
  const x = join(base, 'r110');
  mkdirSync(x, { recursive: true });
  execFileSync('tar', ['-xf', join(repo, 'dist', 'hitless-release-1.1.0.tar'), '-C', x]);
  const { files: _f, format: _v, ...m } = JSON.parse(readFileSync(join(x, 'release.json'), 'utf8')) as Record<string, unknown>;
  mkdirSync(libraryDir, { recursive: true });
  packRelease({ manifest: { ...m, release: '1.2.0' }, files: { 'bin/hitless-dp': join(x, 'bin/hitless-dp'), 'bin/hitless-fwd-l2.so': join(x, 'bin/hitless-fwd-l2.so') }, key: signingKey().key, out: join(libraryDir, 'hitless-release-1.2.0.tar') });
  // and the host package make package wrote (what Install agent puts on a host)
  const deb = readdirSync(join(repo, 'dist')).find((n) => /^hitless-host_.*\.deb$/.test(n));
  if (!deb) throw new Error('no host package in dist/: run make package');
  copyFileSync(join(repo, 'dist', deb), join(libraryDir, deb));
  const proc = spawn(join(repo, 'app/bin/hitless-console'), ['--state', stateDir, '--fleet', fleetFile, '--known-hosts', join(stateDir, 'known_hosts'), '--ssh-config', '/dev/null', '--operator', 'e2e-operator', '--url-file', urlFile, '--releases', libraryDir], {
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
