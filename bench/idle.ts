// bench/run idle [--quick] [--seconds S]
//
// What an idle host costs (issue 19, goal 6): the CPU time and the wake-ups (context switches,
// every thread) of
// - a keeper with nothing to watch (no generation, no VM), and
// - a host serving 2 VMs at 100 frames/s each: its keeper (one thread asleep on each
//   generation's alive lock, woken by the kernel as its packet loop exits: bench/run failover
//   times that detection), the serving generation, and the standby generation (serving
//   nothing: it sleeps deep),
// each over the same S seconds, read from /proc. The noise floor beside them: a process that
// only sleeps (sleep S) measured the same way.
import { readdirSync, readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { keeper } from '../protocol/native/keeper.js';
import { Testbed } from '../testing/testbed.js';
import { finish, numOpt, quick, round2, run, sleep } from './lib.js';

const seconds = numOpt('idle', '--seconds', quick ? 5 : 20);
const TICK_MS = 10; // USER_HZ 100: /proc's CPU times are in 10 ms ticks

/** CPU time (ms) and context switches of every thread of pid so far. */
function usage(pid: number): { cpu_ms: number; switches: number } {
  let switches = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    const st = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
    switches += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0) + Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0);
  }
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return { cpu_ms: (Number(f[11]) + Number(f[12])) * TICK_MS, switches };
}

/** Each pid's CPU share (% of one core) and wake-ups per second over the next S seconds. */
async function over(pids: Record<string, number>): Promise<Record<string, { cpu_pct: number; wakeups_per_s: number }>> {
  const a = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, usage(p)]));
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const dt = (performance.now() - t0) / 1000;
  return Object.fromEntries(
    Object.entries(pids).map(([k, p]) => {
      const b = usage(p);
      return [k, { cpu_pct: round2(((b.cpu_ms - a[k]!.cpu_ms) / 1000 / dt) * 100), wakeups_per_s: round2((b.switches - a[k]!.switches) / dt) }];
    }),
  );
}

async function main(): Promise<void> {
  const bed = new Testbed('bench-idle');
  const sleeper = spawn('sleep', [String(seconds * 3 + 30)], { stdio: 'ignore' });
  try {
    const k = await bed.keeper('idle');
    await sleep(1000);
    const alone = await over({ keeper: k.pid(), sleeper: sleeper.pid! });
    const h = await bed.upgradeHost({ vms: 2, pps: 100, durationS: 3600 });
    await sleep(1000);
    const serving = await over({ keeper: h.k.pid(), serving_generation: h.a.child.pid!, standby_generation: h.b.child.pid! });
    const watch = (await h.k.ctl.request(keeper.genList, {})).gens.map((g) => `${g.gen}: ${g.death_watch ?? 'unknown'}`).join(', ');
    await h.probe.stop();
    const result = {
      seconds,
      keeper_alone: alone.keeper,
      serving: { ...serving, death_watch: watch },
      noise: { sleeping_process: alone.sleeper },
    };
    finish('idle', [
      `Over ${seconds} s each (CPU: % of one core; wake-ups: context switches of every thread per second):`,
      `- a keeper with nothing to watch: ${alone.keeper!.cpu_pct}% CPU, ${alone.keeper!.wakeups_per_s} wake-ups/s`,
      `- a host serving 2 VMs at 100 frames/s each:`,
      `  - its keeper (death watch ${watch}): ${serving.keeper!.cpu_pct}% CPU, ${serving.keeper!.wakeups_per_s} wake-ups/s`,
      `  - the serving generation: ${serving.serving_generation!.cpu_pct}% CPU, ${serving.serving_generation!.wakeups_per_s} wake-ups/s`,
      `  - the standby generation (serving nothing): ${serving.standby_generation!.cpu_pct}% CPU, ${serving.standby_generation!.wakeups_per_s} wake-ups/s`,
      `- noise: a process that only sleeps: ${alone.sleeper!.cpu_pct}% CPU, ${alone.sleeper!.wakeups_per_s} wake-ups/s`,
    ], result);
  } finally {
    sleeper.kill();
    await bed.cleanup();
  }
}

run('idle', main);
