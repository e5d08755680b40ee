// hitless: the fleet operator's command line — a thin shell over the console core, the same one
// the desktop app runs: the same fleet, campaigns (waves, canary, budget, approvals, pause and
// stop/abort), audit log and report files, in the same state directory.
//   hitless hosts    [--hosts LIST] [--json]
//   hitless status   [--hosts LIST] [--json]
//   hitless plan     --hosts LIST --to VERSION [--mode M] [--json]
//   hitless upgrade  --hosts LIST --to VERSION [--mode M] [--approve each|wave|auto] [--canary HOST] [--batch N] [--budget-gap-ms N] [--budget-lost N] [--json]
//   hitless resume   [--campaign ID] [--json]
//   hitless rollback --hosts LIST [--reason TEXT]
//   hitless report   [--campaign ID] [--format json|csv|html]
//   hitless upload-release --hosts LIST --tar FILE [--yes] [--json]
//   hitless install-agent --hosts LIST [--deb FILE] [--yes] [--json]
//   hitless upgrade-keeper --hosts LIST [--yes] [--json]
//   hitless audit verify|export --hosts LIST [--format json|csv] [--json]
// Progress goes to stderr; with --json the last stdout line is one object.
import { existsSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ModeChoice } from '../../../protocol/agent.js';
import type { Approval, Campaign, CampaignSpec, Export, HostAudit, HostRow, Plan, Report, RollbackResult } from '../../../protocol/console.js';
import { api, pushes } from '../../../protocol/console.js';
import { Version } from '../../../protocol/names.js';
import type { z } from 'zod';
import { ConsoleCore } from '../core/console.js';
import { installPreview, libraryPackageFile, type LocalPackage, readLocalPackage } from '../core/agentInstall.js';
import { type LocalRelease, readLocalRelease, uploadPreview } from '../core/releaseUpload.js';
import { answers, fmtUs, hostChanges, measurementLine, parseAnswer, question, table, ttyPassphrase } from './terminal.js';

const USAGE = `usage: hitless hosts|status|plan|upgrade|resume|rollback|report|upload-release|install-agent|upgrade-keeper [options]
       hitless audit verify|export --hosts LIST [--format json|csv] [--json]
  --state DIR         console state: fleet, campaigns, audit log (default $HITLESS_STATE or ~/.local/state/hitless)
  --fleet FILE        import the hosts of a fleet file first (default /var/tmp/hitless-lab/fleet.json when it exists)
  --hosts LIST        all, or host names separated by commas
  --to VERSION        release to upgrade to (plan, upgrade)
  --mode MODE         handoff (default: a new generation, VM by VM), swap (the running
                      generation's forwarding stage replaced in place, a host's VMs at once;
                      only where core and DPDK match) or auto (swap where possible)
  --approve MODE      each (default: ask per VM, or per host for a swap), wave (ask per wave, then
                      the agents move the VMs within the budget) or auto (no question)
  --canary HOST       upgrade this host alone first; a failure there stops the campaign
  --batch N           hosts per wave after the canary (default 1)
  --budget-gap-ms N   largest break a VM may see (default 10)
  --budget-lost N     frames a VM may lose (default 0)
  --campaign ID       resume, report: the campaign (default the latest)
  --reason TEXT       rollback: why (kept in the audit log)
  --format F          report: json, csv or html (default html); audit export: json or csv
  --tar FILE          upload-release: a signed release tar (make package writes them to dist/);
                      each host's agent verifies it against that host's release-signers
  --deb FILE          install-agent: the host package (default: the newest hitless-host deb in
                      dist/, where make package writes it)
  --yes               upload-release, install-agent: no confirmation question after the preview
  --operator NAME     who is acting (default the login name)
  --identity KEY      the SSH key approvals are signed with (default $HITLESS_IDENTITY, else each
                      host's own identity file): a private key file, or the .pub of a key in
                      ssh-agent. Hosts with an approvers file act only on approvals it signs
  --json              print the result as one JSON object on the last stdout line
answers to an approval: y [reason] (approve), n [reason] (deny), q (stop here; every host stays
where it is: hitless resume), a (abort: hosts not committed are moved back)`;

class Usage extends Error {}

const FINAL = new Set(['done', 'stopped', 'aborted', 'failed', 'interrupted']);

function args() {
  const [cmd, ...rest] = process.argv.slice(2);
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      state: { type: 'string', default: process.env.HITLESS_STATE ?? join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'hitless') },
      fleet: { type: 'string' },
      hosts: { type: 'string' },
      to: { type: 'string' },
      approve: { type: 'string', default: 'each' },
      mode: { type: 'string', default: 'handoff' },
      canary: { type: 'string' },
      batch: { type: 'string', default: '1' },
      'budget-gap-ms': { type: 'string', default: '10' },
      'budget-lost': { type: 'string', default: '0' },
      campaign: { type: 'string' },
      reason: { type: 'string', default: 'rollback from the command line' },
      format: { type: 'string', default: 'html' },
      operator: { type: 'string', default: process.env.HITLESS_OPERATOR ?? userInfo().username },
      identity: { type: 'string', ...(process.env.HITLESS_IDENTITY ? { default: process.env.HITLESS_IDENTITY } : {}) },
      json: { type: 'boolean', default: false },
      tar: { type: 'string' },
      deb: { type: 'string' },
      yes: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: true,
  });
  if (cmd === 'audit' ? positionals.length !== 1 || !['verify', 'export'].includes(positionals[0]!) : positionals.length > 0)
    throw new Usage(cmd === 'audit' ? 'hitless audit verify|export' : `unexpected argument ${positionals[0]}`);
  if (!['audit', 'hosts', 'status', 'plan', 'upgrade', 'resume', 'rollback', 'report', 'upload-release', 'install-agent', 'upgrade-keeper'].includes(cmd ?? '')) throw new Usage(cmd ? `unknown command ${cmd}` : 'a command is needed');
  return { cmd: cmd === 'audit' ? `audit ${positionals[0]}` : cmd!, values };
}

type Values = ReturnType<typeof args>['values'];

class Cli {
  readonly core: ConsoleCore;
  private fleetHosts: string[] | null = null;

  constructor(private readonly v: Values) {
    this.core = new ConsoleCore({
      stateDir: resolve(v.state!),
      sshConfig: join(homedir(), '.ssh', 'config'),
      knownHosts: join(homedir(), '.ssh', 'known_hosts'),
      operator: v.operator!,
      approvers: null,
      identity: v.identity ? resolve(v.identity) : null,
      // an encrypted identity file's passphrase, asked on the terminal (kept for this run only)
      askPassphrase: (host, file) => ttyPassphrase(`hitless: passphrase for ${file} (${host}): `),
      transport: 'browser',
      pdf: null,
      secrets: null,
      connectAll: false,
    });
  }

  call<P extends z.ZodTypeAny, R extends z.ZodTypeAny>(req: { method: string; params: P; result: R }, params: z.input<P>): Promise<z.output<R>> {
    return this.core.handle(req.method, params) as Promise<z.output<R>>;
  }

  /** The fleet file's hosts join the console's fleet (the file is the authority for them). */
  async importFleet(): Promise<void> {
    const file = this.v.fleet ?? (existsSync('/var/tmp/hitless-lab/fleet.json') ? '/var/tmp/hitless-lab/fleet.json' : null);
    if (!file) return;
    if (!existsSync(file)) throw new Error(`${file}: no such fleet file (is the lab up? lab/lab up --hosts 2 --vms 4)`);
    await this.call(api.fleetImport, { from: 'fleet-file', path: resolve(file) });
    this.fleetHosts = (await import('../core/fleet.js')).fromLabFleet(resolve(file)).hosts.map((h) => h.name);
  }

  /** The hosts named by --hosts (all: the fleet file's, else the whole fleet), connected. */
  async hosts(list: string | undefined): Promise<HostRow[]> {
    const known = this.core.rows().map((r) => r.name);
    const all = this.fleetHosts ?? known;
    const names = !list || list === 'all' ? all : list.split(',').map((s) => s.trim());
    for (const n of names) if (!known.includes(n)) throw new Usage(`--hosts: no host ${n} in the fleet (${known.join(', ') || 'empty: give --fleet'})`);
    await Promise.all(names.map((n) => this.core.conns.get(n)!.connect()));
    for (const n of names) await this.decideKey(n);
    return names.map((n) => this.core.rows().find((r) => r.name === n)!);
  }

  /** An unknown host key: asked on a terminal (as ssh does), refused otherwise. */
  private async decideKey(name: string): Promise<void> {
    const row = this.core.rows().find((r) => r.name === name)!;
    if (row.conn !== 'hostkey-unknown' || !row.pending_key || !process.stdin.isTTY) return;
    const a = await answers()(`hitless: host ${name} presents an unknown ${row.pending_key.type} key ${row.pending_key.fingerprint}. Trust and remember it? [y/N] `);
    await this.call(api.hostKeyDecide, { name, fingerprint: row.pending_key.fingerprint, accept: /^y(es)?$/i.test(a?.trim() ?? '') });
  }

  release(): string {
    const r = Version.safeParse(this.v.to);
    if (!r.success) throw new Usage(`--to: ${this.v.to === undefined ? 'required' : `'${this.v.to}' is not a release version like 1.2.3`}`);
    return r.data;
  }

  spec(hosts: string[]): CampaignSpec {
    const mode = ModeChoice.safeParse(this.v.mode);
    if (!mode.success) throw new Usage(`--mode: handoff, swap or auto, not '${this.v.mode}'`);
    const approval = { each: 'each-vm', wave: 'each-wave', auto: 'auto' }[this.v.approve!];
    if (!approval) throw new Usage(`--approve: each, wave or auto, not '${this.v.approve}'`);
    const gap = Number(this.v['budget-gap-ms']);
    const lost = Number(this.v['budget-lost']);
    const batch = Number(this.v.batch);
    if (!(gap > 0)) throw new Usage('--budget-gap-ms: a positive number of milliseconds');
    if (!Number.isInteger(lost) || lost < 0) throw new Usage('--budget-lost: a whole number of frames, 0 or more');
    if (!Number.isInteger(batch) || batch < 1) throw new Usage('--batch: a whole number of hosts, 1 or more');
    return { hosts, release: this.release(), canary: this.v.canary ?? null, batch, approval: approval as CampaignSpec['approval'], budget: { max_gap_ms: gap, max_lost: lost }, mode: mode.data, host_modes: {} };
  }

  /** Follow a running campaign to its end: approvals asked on the terminal, progress on stderr. */
  async follow(id: string): Promise<Campaign> {
    const ask = answers();
    const asked = new Set<string>();
    const states = new Map<string, string>();
    let queue: Promise<void> = Promise.resolve();
    let end!: (c: Campaign) => void;
    const ended = new Promise<Campaign>((r) => (end = r));
    const answer = async (a: Approval) => {
      const ans = parseAnswer(await ask(question(a)));
      if (ans.kind === 'stop') return void (await this.call(api.campaignControl, { id, action: 'stop', scope: { level: 'campaign' } }));
      if (ans.kind === 'abort') return void (await this.call(api.campaignControl, { id, action: 'abort', scope: { level: 'campaign' } }));
      await this.call(api.approvalDecide, { id: a.id, decision: ans.kind, reason: ans.reason });
    };
    const unsubscribe = this.core.subscribe((method, params) => {
      if (method === pushes.measurement.method) {
        const p = pushes.measurement.params.parse(params);
        if (p.campaign === id) console.error(measurementLine(p.host, p.measurement));
      } else if (method === pushes.approvals.method) {
        for (const a of pushes.approvals.params.parse(params).approvals)
          if (a.campaign === id && !asked.has(a.id)) {
            asked.add(a.id);
            queue = queue.then(() => answer(a)).catch((e: Error) => console.error(`hitless: ${e.message}`));
          }
      } else if (method === pushes.campaign.method) {
        const c = params as Campaign;
        if (c.id !== id) return;
        for (const line of hostChanges(states, c)) console.error(line);
        if (FINAL.has(c.state) && !this.core.runs.get(id)?.busy) end(c);
      }
    });
    const run = this.core.runs.get(id)!;
    process.once('SIGINT', () => {
      console.error('\nhitless: stopping: every host stays where it is (hitless resume to go on)');
      void run.stop('stopped from the command line (Ctrl-C); every host stays where it is');
    });
    await run.settled();
    unsubscribe();
    return FINAL.has(run.c.state) ? run.c : Promise.race([ended, Promise.resolve(run.c)]);
  }

  /** The CLI's result line: the campaign report's own summary, and each host's outcome. */
  async result(c: Campaign, wallMs: number) {
    const rep = (await this.call(api.reportGet, { campaign: c.id })) as Report;
    const s = rep.summary;
    const outcome = (state: string) => (state === 'committed' || state === 'skipped' || state === 'failed' ? state : 'stopped');
    return {
      campaign: c.id,
      state: c.state,
      hosts: c.hosts.length,
      vms: s.vms,
      upgraded: s.moved,
      lost: s.lost,
      /** of lost, what no switch counts (lost during the hosts' upgrades between switches) */
      lost_outside: s.lost_outside,
      gap_ms: { p50: s.break_ms.p50, p99: s.break_ms.p99, max: s.break_ms.max },
      over_budget: s.over_budget,
      background_gap_ms: s.background_gap_ms,
      wall_ms: Math.round(wallMs),
      outcomes: c.hosts.map((h) => ({ host: h.host, outcome: outcome(h.state), error: h.error, lost: s.hosts.find((x) => x.host === h.host)?.lost ?? null })),
      report: join(resolve(this.v.state!), 'campaigns', `${c.id}.json`),
      error: c.error,
    };
  }
}

/** The hosts' journals verified (the authoritative audit: hostAudit.ts), or exported. */
async function auditHosts(cli: Cli, rows: HostRow[], cmd: string, v: Values): Promise<number> {
  const hosts = rows.map((r) => r.name);
  if (cmd === 'audit export') {
    const format = v.format === 'html' ? 'json' : v.format;
    if (format !== 'json' && format !== 'csv') throw new Usage(`--format: json or csv, not '${v.format}'`);
    process.stdout.write(((await cli.call(api.auditHostsExport, { hosts, format })) as z.infer<typeof Export>).content);
    return 0;
  }
  const r = (await cli.call(api.auditHosts, { hosts })) as { hosts: HostAudit[] };
  print(v, r, table([
    ['host', 'entries', 'signed', 'intact', 'head', 'problem'],
    ...r.hosts.map((h) => [h.host, h.entries, h.signed, h.intact ? 'yes' : 'NO', h.head ? `seq ${h.head.seq} ${h.head.hash.slice(0, 12)}` : '-', h.error ?? (h.problem ? `line ${h.problem.line}${h.problem.seq !== null ? ` (seq ${h.problem.seq})` : ''}: ${h.problem.why}` : h.approvers ? '' : 'no approvers file: approvals are not verified there')]),
  ]));
  return r.hosts.every((h) => h.intact) ? 0 : 1;
}

function print(v: Values, json: unknown, human: string): void {
  if (v.json) console.log(JSON.stringify(json));
  else console.log(human);
}

async function main(): Promise<number> {
  let cmd: string;
  let v: Values;
  try {
    ({ cmd, values: v } = args());
  } catch (e) {
    console.error(`hitless: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const cli = new Cli(v);
  try {
    return await run(cli, cmd, v);
  } catch (e) {
    console.error(`hitless: ${(e as Error).message}${e instanceof Usage ? `\n${USAGE}` : ''}`);
    return e instanceof Usage ? 2 : 1;
  } finally {
    cli.core.close();
  }
}

async function run(cli: Cli, cmd: string, v: Values): Promise<number> {
  if (cmd === 'report') {
    const id = v.campaign ?? [...cli.core.runs.values()].map((r) => r.c).sort((a, b) => b.started.localeCompare(a.started))[0]?.id;
    if (!id) throw new Error(`no campaign in ${v.state} (run hitless upgrade first)`);
    const format = v.format as 'json' | 'csv' | 'html';
    if (!['json', 'csv', 'html'].includes(format)) throw new Usage(`--format: json, csv or html, not '${v.format}'`);
    const x = (await cli.call(api.reportExport, { campaign: id, format })) as z.infer<typeof Export>;
    process.stdout.write(x.content);
    return 0;
  }
  if (cmd === 'upgrade') cli.spec([]); // bad arguments are refused before anything connects
  // what is to be sent is read before anything connects: a wrong file is said at once
  const local = cmd === 'upload-release' ? await readLocalRelease(v.tar ?? (() => {
    throw new Usage('--tar is required');
  })()) : null;
  const pkg = cmd === 'install-agent' ? await hostPackage(v) : null;
  await cli.importFleet();
  if (cmd === 'resume') {
    const runs = [...cli.core.runs.values()].map((r) => r.c).sort((a, b) => b.started.localeCompare(a.started));
    const c = v.campaign ? runs.find((x) => x.id === v.campaign) : runs.find((x) => ['stopped', 'interrupted', 'failed', 'paused'].includes(x.state));
    if (!c) throw new Error(v.campaign ? `no campaign ${v.campaign}` : 'no stopped or interrupted campaign to resume');
    await cli.hosts(c.hosts.map((h) => h.host).join(','));
    const t0 = performance.now();
    await cli.call(api.campaignControl, { id: c.id, action: 'resume', scope: { level: 'campaign' } });
    const end = await cli.follow(c.id);
    const r = await cli.result(end, performance.now() - t0);
    print(v, r, `${r.campaign}: ${r.state}; ${r.upgraded} of ${r.vms} VMs moved, lost ${r.lost}`);
    return end.state === 'done' ? 0 : 1;
  }
  const rows = await cli.hosts(v.hosts ?? (cmd === 'hosts' || cmd === 'status' ? 'all' : undefined) ?? (() => {
    throw new Usage('--hosts is required');
  })());
  if (cmd === 'hosts' || cmd === 'status') {
    const out = rows.map((r) => ({ host: r.name, reachable: r.conn === 'connected', release: r.active?.release ?? null, state: r.state, vms: r.vms, error: r.conn === 'connected' ? null : r.problem }));
    print(v, { hosts: out }, table([
      ['host', 'reachable', 'release', 'state', 'vms', 'problem'],
      ...out.map((r) => [r.host, r.reachable ? 'yes' : 'NO', r.release ?? '-', r.state ?? '-', cmd === 'status' ? r.vms.map((x) => `${x.vm}@${x.serving ?? '-'}`).join(' ') : r.vms.length, r.error ?? '']),
    ]));
    return out.every((r) => r.reachable) ? 0 : 1; // no silent skips
  }
  if (cmd === 'plan') {
    const plan = (await cli.call(api.campaignPreview, { ...cli.spec(rows.map((r) => r.name)), approval: 'each-vm' })) as Plan;
    const plans = plan.waves.flatMap((w) => w.hosts).map((h) => ({ host: h.host, release: plan.spec.release, active: { release: h.from, core: h.core }, modes: h.options, recommended: h.recommended }));
    print(v, { plans, blockers: plan.blockers, notes: plan.notes }, [
      table([
        ['host', 'from', 'mode', 'possible', 'break per VM', 'approvals', 'why'],
        ...plans.flatMap((p) => p.modes.map((m) => [p.host, `${p.active.release} (core ${p.active.core ?? p.active.release})`, m.mode + (m.mode === p.recommended ? ' *' : ''), m.available ? 'yes' : 'no', fmtUs(m.predicted_break_us), m.approvals, m.reason])),
      ]),
      '* recommended (hitless upgrade --mode auto picks it)',
      ...plan.notes,
      ...plan.blockers.map((b) => `cannot start: ${b}`),
    ].join('\n'));
    return plan.blockers.length ? 1 : 0;
  }
  if (cmd === 'audit verify' || cmd === 'audit export') return auditHosts(cli, rows, cmd, v);
  if (cmd === 'upload-release') return uploadReleases(cli, rows, local!, v);
  if (cmd === 'install-agent') return installAgents(cli, rows, pkg!, v);
  if (cmd === 'upgrade-keeper') return upgradeKeepers(cli, rows, v);
  if (cmd === 'rollback') {
    let ok = true;
    for (const r of rows) {
      const res = (await cli.call(api.rollbackRun, { scope: { level: 'host', host: r.name }, reason: v.reason! })) as RollbackResult;
      ok &&= res.ok;
      console.error(`${r.name}: ${res.plan.steps.map((s) => `${s.action}${s.to ? ` to ${s.to}` : ''}`).join(', ') || 'nothing to do'}; ${res.ok ? 'every VM verified with traffic' : res.errors.join('; ')}`);
    }
    return ok ? 0 : 1;
  }
  // upgrade
  const spec = cli.spec(rows.map((r) => r.name));
  const t0 = performance.now();
  if (rows.every((r) => r.conn === 'connected' && r.state === 'idle' && r.active?.release === spec.release)) {
    const r = { hosts: rows.length, vms: rows.reduce((n, x) => n + x.vms.length, 0), upgraded: 0, lost: 0, wall_ms: 0, outcomes: rows.map((x) => ({ host: x.name, outcome: 'skipped', error: null })) };
    print(v, r, `every host already runs ${spec.release}: nothing to move`);
    return 0;
  }
  let c: Campaign;
  try {
    c = (await cli.call(api.campaignStart, spec)) as Campaign;
  } catch (e) {
    // a host that cannot take part stops the campaign before it starts: nothing is skipped silently
    const r = { hosts: rows.length, vms: 0, upgraded: 0, lost: 0, wall_ms: 0, outcomes: rows.map((x) => ({ host: x.name, outcome: 'failed', error: x.conn === 'connected' ? (e as Error).message : `unreachable: ${x.problem}` })) };
    print(v, r, (e as Error).message);
    return 1;
  }
  console.error(`campaign ${c.id}: ${c.plan.notes.join(' ')}`);
  const end = await cli.follow(c.id);
  const r = await cli.result(end, performance.now() - t0);
  console.error(`report: ${r.report} (hitless report --campaign ${r.campaign} --format html|csv|json)`);
  print(v, r, `${r.campaign}: ${r.state}; ${r.upgraded} of ${r.vms} VMs moved; lost ${r.lost}${r.lost_outside ? ` (${r.lost_outside} outside every switch window)` : ''}; break p50 ${r.gap_ms.p50 ?? '-'} ms, p99 ${r.gap_ms.p99 ?? '-'} ms, max ${r.gap_ms.max ?? '-'} ms${r.error ? `; ${r.error}` : ''}`);
  return end.state === 'done' && end.hosts.every((h) => h.state === 'committed' || h.state === 'skipped') ? 0 : 1;
}

/** After a preview: the operator's yes (--yes, or y on the terminal). */
async function confirmed(v: Values, question: string, nothing: string): Promise<boolean> {
  if (v.yes) return true;
  if (!process.stdin.isTTY) throw new Usage('--yes is needed when there is no terminal to confirm on');
  const a = await answers()(`${question} [y/N] `);
  if (/^y(es)?$/i.test(a?.trim() ?? '')) return true;
  console.error(`hitless: ${nothing}`);
  return false;
}

/** Progress of a copy to hosts, by quarters. */
function copyProgress(file: string): (host: string, sent: number, total: number) => void {
  const shown = new Map<string, number>();
  return (host, sent, total) => {
    const pct = Math.floor((sent / total) * 4) * 25;
    if (pct <= (shown.get(host) ?? -1)) return;
    shown.set(host, pct);
    console.error(`${host}: ${file}: ${pct}% of ${total} bytes sent`);
  };
}

/** upload-release: the preview, a confirmation, then each host in turn with its progress. */
async function uploadReleases(cli: Cli, rows: HostRow[], local: LocalRelease, v: Values): Promise<number> {
  const names = rows.map((r) => r.name);
  console.error(uploadPreview(local, names).join('\n'));
  if (!(await confirmed(v, `upload to ${names.length} host${names.length === 1 ? '' : 's'}?`, 'nothing uploaded'))) return 1;
  const res = await cli.core.uploadRelease(names, local, resolve(v.tar!), copyProgress(local.file));
  const result = (o: (typeof res.hosts)[number]) => o.error ?? `release ${o.release} signed by ${o.signer}: ${o.installed ? 'installed' : 'already installed'}`;
  for (const o of res.hosts) console.error(`${o.host}: ${result(o)}`);
  print(v, res, table([['host', 'result'], ...res.hosts.map((o) => [o.host, result(o)])]));
  return res.hosts.every((o) => !o.error) ? 0 : 1;
}

/** The host package install-agent sends: --deb, or the newest one make package wrote. */
async function hostPackage(v: Values): Promise<{ local: LocalPackage; deb: string }> {
  const dist = resolve(dirname(fileURLToPath(import.meta.url)), '../../../dist');
  const deb = v.deb ? resolve(v.deb) : libraryPackageFile(dist);
  if (!deb) throw new Usage(`--deb: no host package in ${dist} (make package writes one)`);
  return { local: await readLocalPackage(deb), deb };
}

/** install-agent: the preview, a confirmation, then each host in turn (checks, copy, dpkg, the
 * new agent's version). */
async function installAgents(cli: Cli, rows: HostRow[], p: { local: LocalPackage; deb: string }, v: Values): Promise<number> {
  const names = rows.map((r) => r.name);
  console.error(installPreview(p.local, names.map((n) => ({ name: n, target: cli.core.conns.get(n)!.entry.host_package }))).join('\n'));
  if (!(await confirmed(v, `install ${p.local.package} ${p.local.version} on ${names.length} host${names.length === 1 ? '' : 's'}?`, 'nothing installed'))) return 1;
  const res = await cli.core.installAgent(names, p.local, p.deb, copyProgress(p.local.file));
  const result = (o: (typeof res.hosts)[number]) => o.error ?? `installed; the agent answers, version ${o.agent_version}`;
  for (const o of res.hosts) console.error(`${o.host}: ${result(o)}`);
  print(v, res, table([['host', 'result'], ...res.hosts.map((o) => [o.host, result(o)])]));
  return res.hosts.every((o) => !o.error) ? 0 : 1;
}

/** Each host's keeper replaced under its sessions by the one its host package installed. */
async function upgradeKeepers(cli: Cli, rows: HostRow[], v: Values): Promise<number> {
  for (const r of rows) {
    const k = r.keeper;
    console.error(`${r.name}: ${!k ? 'its agent cannot say (an agent from before keeper upgrades)' : !k.running ? 'no keeper runs' : `keeper ${k.running.version} (pid ${k.running.pid}, ${k.running.sessions} sessions) -> the installed ${k.installed ?? '(none)'}${k.due ? '' : ' (the same version: replaced all the same)'}`}`);
  }
  if (!(await confirmed(v, `replace the keeper on ${rows.length} host${rows.length === 1 ? '' : 's'}? (its VMs keep forwarding; their control messages wait for the pause)`, 'no keeper replaced'))) return 1;
  const out: { host: string; upgraded: boolean; from_version: string | null; version: string | null; from_pid: number | null; pid: number | null; pause_ms: number | null; sessions: number | null; error: string | null }[] = [];
  for (const r of rows) {
    try {
      const u = await cli.call(api.keeperUpgrade, { host: r.name });
      out.push({ host: r.name, upgraded: true, from_version: u.from_version, version: u.version, from_pid: u.from_pid, pid: u.pid, pause_ms: u.pause_us === null ? null : u.pause_us / 1000, sessions: u.sessions, error: null });
    } catch (e) {
      out.push({ host: r.name, upgraded: false, from_version: null, version: null, from_pid: null, pid: null, pause_ms: null, sessions: null, error: (e as Error).message });
    }
  }
  const said = (o: (typeof out)[number]) => o.error ?? `keeper ${o.from_version} (pid ${o.from_pid}) handed ${o.sessions} sessions to ${o.version} (pid ${o.pid}); control paused ${o.pause_ms} ms`;
  for (const o of out) console.error(`${o.host}: ${said(o)}`);
  print(v, { hosts: out }, table([['host', 'result'], ...out.map((o) => [o.host, said(o)])]));
  return out.every((o) => o.upgraded) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`hitless: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
