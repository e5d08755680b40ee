// bench/run coldstart [--quick] [--runs N]
//
// What an operator's host runs, from dist/ (make package first): the sizes of the packages and
// of the agent executable, and the agent's cold start — the packaged executable (Node 24 single-
// executable application) unpacked into a scratch directory with no repository: `--version`, and
// `--stdio` until its first answer (host/info, what the console asks first on every connection).
// Beside them, in the same run: the agent from the repository (node + tsx, as the lab ran it
// before there were packages), and spawning /bin/true (this machine's floor for starting any
// process: its noise).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AgentClient } from '../agent/src/client/agentClient.js';
import { agent as rpc } from '../protocol/agent.js';
import { finish, numOpt, pct, quick, run } from './lib.js';

const runs = numOpt('coldstart', '--runs', quick ? 10 : 40);
const dist = resolve('dist');

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;

/** Spawn to exit, in ms; the command must succeed. */
function timedRun(cmd: string, args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, encoding: 'utf8' });
  const t = ms(t0);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return t;
}

/** Spawn to the first answer over --stdio (host/info), in ms; then the agent is let go. */
async function timedFirstAnswer(cmd: string, args: string[], env: NodeJS.ProcessEnv, host: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const p = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const c = new AgentClient(p.stdout, p.stdin);
  try {
    const info = await c.request(rpc.hostInfo, {});
    const t = ms(t0);
    if (info.host !== host) throw new Error(`host/info answered ${info.host}, not ${host}: ${stderr}`);
    return t;
  } finally {
    c.dispose();
    p.stdin.end();
    await new Promise<void>((r) => (p.exitCode !== null ? r() : p.once('exit', () => r())));
  }
}

async function main(): Promise<void> {
  const debs = readdirSync(dist, { withFileTypes: true }).filter((f) => /^hitless-host_.*_amd64\.deb$/.test(f.name));
  if (debs.length !== 1) throw new Error(`one host package expected in ${dist}, found ${debs.length}: run make package first`);
  const deb = join(dist, debs[0]!.name);
  const scratch = mkdtempSync(join(tmpdir(), 'hl-coldstart-'));
  try {
    const root = join(scratch, 'root');
    execFileSync('dpkg', ['-x', deb, root]);
    const agent = join(root, 'usr/bin/hitless-agent');
    // a host root as the package lays out /var/lib/hitless, with a minimal config
    const host = join(scratch, 'host');
    for (const d of ['etc', 'releases', 'bin']) mkdirSync(join(host, d), { recursive: true });
    symlinkSync(join(root, 'usr/lib/hitless/hitless-keeper'), join(host, 'bin/hitless-keeper'));
    writeFileSync(join(host, 'etc/agent.json'), JSON.stringify({ host: 'coldstart', vms: [], release_signers: join(root, 'etc/hitless/release-signers') }));
    const bare = { PATH: '/usr/bin:/bin' };
    const fromRepo = [process.execPath, ['--import', 'tsx', resolve('agent/src/cli.ts')]] as const;

    const t = { floor: [] as number[], version: [] as number[], first: [] as number[], repoFirst: [] as number[] };
    // interleaved, so that what the machine does meanwhile falls on each alike
    for (let i = 0; i < runs; i++) {
      t.floor.push(timedRun('/bin/true', [], bare));
      t.version.push(timedRun(agent, ['--version'], bare));
      t.first.push(await timedFirstAnswer(agent, ['--stdio', '--root', host], bare, 'coldstart'));
      t.repoFirst.push(await timedFirstAnswer(fromRepo[0], [...fromRepo[1], '--stdio', '--root', host], process.env, 'coldstart'));
    }
    const version = execFileSync(agent, ['--version'], { env: bare, encoding: 'utf8' }).trim();
    const sizes = Object.fromEntries(
      readdirSync(dist)
        .filter((f) => f.endsWith('.deb') || f.endsWith('.tar'))
        .map((f) => [f, mb(statSync(join(dist, f)).size)]),
    );
    const result = {
      runs,
      agent_version: version,
      size_mb: { ...sizes, agent_executable: mb(statSync(agent).size) },
      version_ms: pct(t.version),
      first_answer_ms: pct(t.first),
      repo_first_answer_ms: pct(t.repoFirst),
      spawn_floor_ms: pct(t.floor),
    };
    finish('coldstart', [
      `${version}, from ${debs[0]!.name} unpacked into a scratch directory (PATH=/usr/bin:/bin, no repository); ${runs} runs of each, interleaved.`,
      '',
      `- sizes: ${Object.entries(result.size_mb).map(([k, v]) => `${k} ${v} MB`).join(', ')}`,
      `- hitless-agent --version, spawn to exit: p50 ${result.version_ms.p50} ms, p99 ${result.version_ms.p99} ms, max ${result.version_ms.max} ms`,
      `- hitless-agent --stdio, spawn to its first answer (host/info): p50 ${result.first_answer_ms.p50} ms, p99 ${result.first_answer_ms.p99} ms, max ${result.first_answer_ms.max} ms`,
      `- the same from the repository (node + tsx, before packaging): p50 ${result.repo_first_answer_ms.p50} ms, p99 ${result.repo_first_answer_ms.p99} ms, max ${result.repo_first_answer_ms.max} ms`,
      `- noise: /bin/true, spawn to exit: p50 ${result.spawn_floor_ms.p50} ms, p99 ${result.spawn_floor_ms.p99} ms, max ${result.spawn_floor_ms.max} ms`,
    ], result);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

run("coldstart", main);
