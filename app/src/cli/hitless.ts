// hitless: the fleet operator's command line, on the same console core as the desktop app.
//   hitless hosts    [--fleet F] [--json]
//   hitless status   [--fleet F] [--hosts all|h1,h2] [--json]
//   hitless plan     --hosts all|h1,h2 --to VERSION [--json]
//   hitless upgrade  --hosts all|h1,h2 --to VERSION [--mode handoff|swap|auto] [--approve each|auto] [--budget-gap-ms N] [--budget-lost N] [--json]
//   hitless rollback --hosts all|h1,h2
//   hitless report   [--format json|csv|html] [--in FILE]
// Hosts come from a fleet file (the lab's fleet.json); SSH follows its ssh_config with strict
// host key checking. Progress goes to stderr; with --json the last stdout line is one object.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { Fleet } from '../../../lab/src/fleet.js';
import { agent, ModeChoice, Version } from '../../../agent/src/common/protocol.js';
import { gapMs } from '../common/api.js';
import { upgradeHost, type HostOutcome } from '../core/campaign.js';
import { renderReport, type CampaignReport } from '../core/report.js';
import { openAgentSession, type AgentSession } from '../core/ssh/agentSession.js';

const USAGE = `usage: hitless hosts|status|plan|upgrade|rollback|report [options]
  --fleet FILE        fleet inventory (default /var/tmp/hitless-lab/fleet.json)
  --hosts LIST        all, or host names separated by commas
  --to VERSION        release to upgrade to (plan, upgrade)
  --mode MODE         handoff (default: a new generation, VM by VM), swap (the running
                      generation's forwarding stage replaced in place, a host's VMs at once;
                      only where core and DPDK match) or auto (swap where possible)
  --approve MODE      each (default: ask per VM) or auto (the agent moves VMs within the budget)
  --budget-gap-ms N   auto: largest break a VM may see (default 10)
  --budget-lost N     auto: frames a VM may lose (default 0)
  --format F          report: json, csv or html (default html)
  --json              print the result as one JSON object on the last stdout line`;

const fmtUs = (us: number): string => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us} us`);

function fail(msg: string, code = 2): never {
  console.error(`hitless: ${msg}`);
  if (code === 2) console.error(USAGE);
  process.exit(code);
}

function loadFleet(path: string): Fleet {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    fail(`${path}: ${(e as Error).message} (is the lab up? lab/lab up --hosts 2 --vms 4)`, 1);
  }
  const f = Fleet.safeParse(raw);
  if (!f.success) fail(`${path}: ${f.error.issues[0]!.path.join('.')}: ${f.error.issues[0]!.message}`, 1);
  return f.data;
}

function pickHosts(fleet: Fleet, list: string | undefined): Fleet['hosts'] {
  if (!list || list === 'all') return fleet.hosts;
  return list.split(',').map((n) => fleet.hosts.find((h) => h.name === n) ?? fail(`--hosts: no host ${n} in the fleet (${fleet.hosts.map((h) => h.name).join(', ')})`));
}

async function session(fleet: Fleet, h: Fleet['hosts'][number]): Promise<AgentSession> {
  return openAgentSession(h.name, `${h.agent} --stdio`, {
    sshConfig: fleet.ssh_config,
    decideUnknown: async (_t, type, fp) => {
      if (!process.stdin.isTTY) return false;
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      const a = await rl.question(`hitless: host ${h.name} presents an unknown ${type} key ${fp}. Trust and remember it? [y/N] `);
      rl.close();
      return /^y(es)?$/i.test(a.trim());
    },
  });
}

/** Answers typed (or piped) on stdin, read once and in order: a piped script of answers is
 * buffered, not lost when stdin ends before the question is asked. End of input = no answer. */
function answers(): (prompt: string) => Promise<string | null> {
  const it = createInterface({ input: process.stdin, terminal: false })[Symbol.asyncIterator]();
  return async (prompt) => {
    process.stderr.write(prompt);
    const r = await it.next();
    return r.done ? null : String(r.value);
  };
}

function table(rows: (string | number)[][]): string {
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  return rows.map((r) => r.map((v, c) => String(v).padEnd(w[c]!)).join('  ')).join('\n');
}

function pct(xs: number[]): { p50: number; p99: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : 0);
  const r = (x: number) => Math.round(x * 100) / 100;
  return { p50: r(at(50)), p99: r(at(99)), max: r(s.at(-1) ?? 0) };
}


async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        fleet: { type: 'string', default: '/var/tmp/hitless-lab/fleet.json' },
        hosts: { type: 'string' },
        to: { type: 'string' },
        approve: { type: 'string', default: 'each' },
        mode: { type: 'string', default: 'handoff' },
        'budget-gap-ms': { type: 'string', default: '10' },
        'budget-lost': { type: 'string', default: '0' },
        format: { type: 'string', default: 'html' },
        in: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (e) {
    fail((e as Error).message);
  }
  if (cmd === 'report') return report(values.format!, values.in);
  if (!['hosts', 'status', 'plan', 'upgrade', 'rollback'].includes(cmd ?? '')) fail(cmd ? `unknown command ${cmd}` : 'a command is needed');
  const fleet = loadFleet(values.fleet!);
  const hosts = pickHosts(fleet, values.hosts ?? (cmd === 'hosts' || cmd === 'status' ? 'all' : fail('--hosts is required')));

  if (cmd === 'hosts' || cmd === 'status') {
    const rows = await Promise.all(
      hosts.map(async (h) => {
        try {
          const s = await session(fleet, h);
          try {
            const info = await s.agent.request(agent.hostInfo, {});
            const st = await s.agent.request(agent.upgradeStatus, {});
            return { host: h.name, reachable: true, release: info.active?.release ?? null, state: st.state, vms: st.vms, error: null };
          } finally {
            s.close();
          }
        } catch (e) {
          return { host: h.name, reachable: false, release: null, state: null, vms: [], error: (e as Error).message };
        }
      }),
    );
    if (values.json) console.log(JSON.stringify({ hosts: rows }));
    else
      console.log(
        table([
          ['host', 'reachable', 'release', 'state', 'vms', 'problem'],
          ...rows.map((r) => [r.host, r.reachable ? 'yes' : 'NO', r.release ?? '-', r.state ?? '-', cmd === 'status' ? r.vms.map((v) => `${v.vm}@${v.serving ?? '-'}`).join(' ') : r.vms.length, r.error ?? '']),
        ]),
      );
    if (rows.some((r) => !r.reachable)) process.exitCode = 1; // no silent skips
    return;
  }

  if (cmd === 'plan') {
    const release = Version.safeParse(values.to);
    if (!release.success) fail(`--to: ${values.to === undefined ? 'required' : `'${values.to}' is not a release version like 1.2.3`}`);
    const plans = [];
    for (const h of hosts) {
      const s = await session(fleet, h);
      try {
        plans.push(await s.agent.request(agent.upgradePlan, { release: release.data! }));
      } finally {
        s.close();
      }
    }
    if (values.json) console.log(JSON.stringify({ plans }));
    else
      console.log(
        table([
          ['host', 'from', 'mode', 'possible', 'break per VM', 'approvals', 'why'],
          ...plans.flatMap((p) =>
            p.modes.map((m) => [p.host, `${p.active.release} (core ${p.active.core ?? p.active.release})`, m.mode + (m.mode === p.recommended ? ' *' : ''), m.available ? 'yes' : 'no', fmtUs(m.predicted_break_us), m.approvals, m.reason]),
          ),
        ]) + '\n* recommended (hitless upgrade --mode auto picks it)',
      );
    return;
  }

  if (cmd === 'rollback') {
    for (const h of hosts) {
      const s = await session(fleet, h);
      try {
        const st = await s.agent.request(agent.upgradeRollback, {});
        console.error(`${h.name}: ${st.last_outcome}; every VM on ${st.active?.release}`);
      } finally {
        s.close();
      }
    }
    return;
  }

  // upgrade
  const release = Version.safeParse(values.to);
  if (!release.success) fail(`--to: ${values.to === undefined ? 'required' : `'${values.to}' is not a release version like 1.2.3`}`);
  if (values.approve !== 'each' && values.approve !== 'auto') fail(`--approve: each or auto, not '${values.approve}'`);
  const mode = ModeChoice.safeParse(values.mode);
  if (!mode.success) fail(`--mode: handoff, swap or auto, not '${values.mode}'`);
  const gapBudget = Number(values['budget-gap-ms']);
  const lostBudget = Number(values['budget-lost']);
  if (!(gapBudget > 0)) fail('--budget-gap-ms: a positive number of milliseconds');
  if (!Number.isInteger(lostBudget) || lostBudget < 0) fail('--budget-lost: a whole number of frames, 0 or more');
  const approve = values.approve === 'auto' ? { auto: { max_gap_ms: gapBudget, max_lost: lostBudget } } : ('each' as const);
  const ask = approve === 'each' ? answers() : async () => null;
  const t0 = performance.now();
  const outcomes: HostOutcome[] = [];
  for (const h of hosts) {
    let s: AgentSession;
    try {
      s = await session(fleet, h);
    } catch (e) {
      // an unreachable host stops the campaign: nothing is skipped silently
      outcomes.push({ host: h.name, outcome: 'failed', measurements: [], error: `unreachable: ${(e as Error).message}` });
      break;
    }
    try {
      const o = await upgradeHost(s, { hosts: hosts.map((x) => x.name), release: release.data!, approve, mode: mode.data! }, async (host, vm, ctx) => {
        const last = ctx.measured.at(-1);
        const a = await ask(`switch ${vm} on ${host} to ${release.data}?` + (last ? ` (previous VM: ${gapMs(last).toFixed(2)} ms, dropped ${last.dropped})` : '') + ' [y/N/q] ');
        return a === null || /^q/i.test(a) ? 'stop' : /^y/i.test(a) ? 'yes' : 'no';
      }, (line) => console.error(line));
      outcomes.push(o);
      if (o.outcome === 'failed' || o.outcome === 'stopped') break; // stop means stop
    } catch (e) {
      outcomes.push({ host: h.name, outcome: 'failed', measurements: [], error: (e as Error).message });
      break;
    } finally {
      s.close();
    }
  }
  const wallMs = performance.now() - t0;
  const ms = outcomes.flatMap((o) => o.measurements);
  const result = {
    hosts: hosts.length,
    vms: hosts.reduce((n, h) => n + h.vms.length, 0),
    // a handoff's target generation is named after its release; a swap's is "<gen>:<stage>@<release>"
    upgraded: ms.filter((m) => m.to.startsWith(`${release.data!}-`) || m.to.endsWith(`@${release.data!}`)).length,
    lost: ms.reduce((n, m) => n + m.dropped, 0),
    gap_ms: pct(ms.map(gapMs)),
    wall_ms: Math.round(wallMs),
    outcomes: outcomes.map((o) => ({ host: o.host, outcome: o.outcome, error: o.error })),
  };
  const rep: CampaignReport = { release: release.data!, approve, started: new Date(Date.now() - wallMs).toISOString(), result, measurements: ms };
  mkdirSync('results', { recursive: true });
  const file = `results/campaign-${Date.now()}.json`;
  writeFileSync(file, JSON.stringify(rep, null, 2));
  console.error(`report: ${file} (hitless report --format html|csv|json)`);
  if (values.json) console.log(JSON.stringify(result));
  if (outcomes.some((o) => o.outcome !== 'committed' && o.outcome !== 'skipped') || outcomes.length < hosts.length) process.exitCode = 1;
}

function report(format: string, input: string | undefined): void {
  if (!['json', 'csv', 'html'].includes(format)) fail(`--format: json, csv or html, not '${format}'`);
  const file =
    input ??
    (() => {
      let names: string[] = [];
      try {
        names = readdirSync('results').filter((n) => /^campaign-\d+\.json$/.test(n)).sort();
      } catch {
        /* none */
      }
      return names.length ? `results/${names.at(-1)}` : fail('no campaign report in results/ (run hitless upgrade first)', 1);
    })();
  const rep = JSON.parse(readFileSync(file, 'utf8')) as CampaignReport;
  process.stdout.write(renderReport(rep, format as 'json' | 'csv' | 'html'));
}

main().catch((e: unknown) => {
  console.error(`hitless: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
