// The console core: the fleet and its SSH connections, campaigns, the approval queue, guided
// rollback, reports and the audit log, behind the one API (protocol/console.ts). Plain Node: the
// Electron main process and the browser-mode host both wrap it, and neither adds logic of its
// own. Every request is checked against its schema here, whichever transport carried it, and
// every result against its own before it leaves. State lives in one directory: fleet.json,
// audit.jsonl, campaigns/*.json.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { z } from 'zod';
import { agent, type KeeperUpgraded, type UpgradePlan } from '../../../protocol/agent.js';
import { api, Campaign, pushes, requestByMethod, type Approval, type Backend, type CampaignSpec, type Decision, type HostRow, type InstallResult, type Transfer, type UploadResult } from '../../../protocol/console.js';
import { describeZodError, type Request } from '../../../protocol/rpc.js';
import { AuditLog } from './audit.js';
import { exportJournals, HostJournals, type HostJournal } from './hostAudit.js';
import type { SignedApproval } from '../../../protocol/approval.js';
import { contextDigest, signApproval, type ApprovalFacts } from './approvalSign.js';
import { buildReport, renderCsv, renderHtml, renderJson } from './campaignReport.js';
import { CampaignRun } from './campaignRun.js';
import { fromAnsible, fromLabFleet, fromSshConfig, FleetStore } from './fleet.js';
import { HostConn, Limiter } from './hostConn.js';
import { planCampaign } from './plan.js';
import { InstallRefused, installOnHost, installPreview, libraryPackageFile, type LocalPackage, readLocalPackage, upstreamVersion } from './agentInstall.js';
import { libraryFiles, libraryReleases, type LocalRelease, readLocalRelease, uploadPreview, uploadRelease } from './releaseUpload.js';
import { previewRollback, runRollback, type RollbackDeps } from './rollback.js';

export interface CoreOptions {
  stateDir: string;
  sshConfig: string;
  knownHosts: string;
  operator: string;
  /** who may approve switchovers; null: every operator */
  approvers: string[] | null;
  /** asks the operator for an encrypted identity file's passphrase (the CLI, on its terminal) */
  askPassphrase?: (host: string, file: string) => Promise<string | null>;
  /** the SSH key the operator's decisions are signed with (a private key file, or the .pub of
   * a key in ssh-agent); null: each host's own SSH identity file, as the console logs in with */
  identity?: string | null;
  transport: 'electron' | 'browser';
  /** renders a self-contained HTML page to PDF (Electron's printToPDF, or headless Chromium) */
  pdf: ((html: string) => Promise<Buffer>) | null;
  maxConnecting?: number;
  /** secrets (identity passphrases): the OS keyring through Electron's safeStorage; null in browser mode */
  secrets: SecretStore | null;
  /** connect every host of the fleet at start (default); the CLI connects only the hosts it acts on */
  connectAll?: boolean;
  /** the release tars the console offers to upload to hosts (dist/, or the desktop app's
   * resources); null or absent: none */
  releaseLibrary?: string | null;
}

export interface SecretStore {
  get(key: string): string | null;
  /** throws when no real keyring protects the secret */
  set(key: string, value: string): void;
}

export const CONSOLE_VERSION = '0.1.0';
/** how long an installed agent waits for a step of the old one to end before it takes over */
const AGENT_IDLE_WAIT_MS = 120_000;

type Handler = (p: unknown) => Promise<unknown>;

export class ConsoleCore implements Backend {
  readonly fleet: FleetStore;
  readonly audit: AuditLog;
  readonly journals: HostJournals;
  readonly conns = new Map<string, HostConn>();
  readonly runs = new Map<string, CampaignRun>();
  private readonly asks = new Map<string, { a: Approval; resolve: (d: Decision | null) => void }>();
  private readonly subs = new Set<(method: string, params: unknown) => void>();
  private readonly limiter: Limiter;
  private fleetTimer: NodeJS.Timeout | null = null;
  private readonly handlers = new Map<string, Handler>();
  /** hosts an agent install is copying or installing to */
  private readonly installing = new Set<string>();
  /** identity passphrases given this session (not remembered in the keyring unless asked) */
  private readonly passphrases = new Map<string, string>();

  constructor(readonly opts: CoreOptions) {
    mkdirSync(join(opts.stateDir, 'campaigns'), { recursive: true });
    this.fleet = new FleetStore(join(opts.stateDir, 'fleet.json'));
    this.audit = new AuditLog(join(opts.stateDir, 'audit.jsonl'));
    this.journals = new HostJournals(opts.stateDir);
    this.limiter = new Limiter(opts.maxConnecting ?? 8);
    this.loadCampaigns();
    this.wire();
    for (const h of this.fleet.list()) this.addConn(h);
  }

  // ---------------------------------------------------------------- transport side

  async handle(method: string, params: unknown): Promise<unknown> {
    const req = requestByMethod.get(method);
    const fn = this.handlers.get(method);
    if (!req || !fn) throw new Error(`unknown method ${JSON.stringify(method).slice(0, 80)}`);
    const p = req.params.safeParse(params ?? {});
    if (!p.success) throw new Error(describeZodError(method, p.error));
    return req.result.parse(await fn(p.data));
  }

  subscribe(fn: (method: string, params: unknown) => void): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }

  private push<P extends z.ZodTypeAny>(p: { method: string; params: P }, params: z.input<P>): void {
    for (const fn of this.subs) fn(p.method, params);
  }

  /** Fleet snapshots go out at most twice a second, whatever the event rate. */
  private fleetChanged(): void {
    this.fleetTimer ??= setTimeout(() => {
      this.fleetTimer = null;
      this.push(pushes.fleet, { hosts: this.rows() });
    }, 500);
  }

  close(): void {
    for (const r of this.runs.values()) r.detach();
    for (const c of this.conns.values()) c.close();
    for (const a of this.asks.values()) a.resolve(null);
    if (this.fleetTimer) clearTimeout(this.fleetTimer);
  }

  // ---------------------------------------------------------------- wiring: one line per method

  private on<P extends z.ZodTypeAny, R extends z.ZodTypeAny>(req: Request<P, R>, fn: (p: z.output<P>) => Promise<z.input<R>>): void {
    this.handlers.set(req.method, fn as Handler);
  }

  private wire(): void {
    this.on(api.session, async () => ({ operator: this.opts.operator, may_approve: this.mayApprove(), transport: this.opts.transport, version: CONSOLE_VERSION }));
    this.on(api.fleetList, async () => ({ hosts: this.rows() }));
    this.on(api.fleetAdd, async (p) => this.addHost(p));
    this.on(api.fleetImport, async (p) => this.importHosts(p));
    this.on(api.fleetRemove, async (p) => this.removeHost(p.name));
    this.on(api.hostConnect, async (p) => (await this.conn(p.name).connect(), this.row(p.name)));
    this.on(api.hostKeyDecide, async (p) => this.decideKey(p.name, p.fingerprint, p.accept));
    this.on(api.hostPassphrase, async (p) => {
      const c = this.conn(p.name);
      if (p.remember) {
        if (!this.opts.secrets) throw new Error('host/passphrase: remember: browser mode has no OS keyring; the passphrase can be kept for this session only (or load the key into ssh-agent)');
        this.opts.secrets.set(`passphrase:${p.name}`, p.passphrase);
      }
      this.passphrases.set(p.name, p.passphrase);
      this.record('host/passphrase', { host: p.name, remembered: p.remember }); // never the secret itself
      await c.connect();
      return this.row(p.name);
    });
    this.on(api.hostTraffic, async (p) => {
      const c = this.conn(p.name);
      return { samples: [...c.samples.values()].flat(), marks: c.marks };
    });
    this.on(api.campaignPreview, async (p) => planCampaign(p, this.rows(), await this.modeOptions(p)));
    this.on(api.campaignStart, async (p) => this.startCampaign(p));
    this.on(api.campaignList, async () => ({ campaigns: [...this.runs.values()].map((r) => r.c).sort((a, b) => b.started.localeCompare(a.started)) }));
    this.on(api.campaignControl, async (p) => this.control(p));
    this.on(api.approvalList, async () => ({ approvals: this.pending() }));
    this.on(api.approvalDecide, async (p) => this.decide(p.id, p.decision, p.reason));
    this.on(api.releaseLibrary, async () => ({ dir: this.opts.releaseLibrary ?? null, releases: await libraryReleases(this.opts.releaseLibrary ?? null) }));
    this.on(api.releasePreview, async (p) => ({ lines: uploadPreview(await this.libraryRelease(p.file), p.hosts) }));
    this.on(api.releaseUpload, async (p) => this.uploadRelease(p.hosts, await this.libraryRelease(p.file), join(this.opts.releaseLibrary!, p.file), this.transferPush('release/upload', p.file)));
    this.on(api.agentPackage, async () => {
      const deb = libraryPackageFile(this.opts.releaseLibrary ?? null);
      return { dir: this.opts.releaseLibrary ?? null, package: deb ? await readLocalPackage(deb) : null };
    });
    this.on(api.agentPreview, async (p) => ({ lines: installPreview((await this.libraryPackage()).local, p.hosts.map((h) => ({ name: h, target: this.conn(h).entry.host_package }))) }));
    this.on(api.agentInstall, async (p) => {
      const { local, deb } = await this.libraryPackage();
      return this.installAgent(p.hosts, local, deb, this.transferPush('agent/install', local.file));
    });
    this.on(api.keeperUpgrade, async (p) => this.upgradeKeeper(p.host));
    this.on(api.rollbackPreview, async (p) => previewRollback(p, this.rollbackDeps()));
    this.on(api.rollbackRun, async (p) => this.rollback(p.scope, p.reason));
    this.on(api.reportGet, async (p) => {
      const c = this.runs.get(p.campaign)?.c;
      if (!c) throw new Error(`report/get: campaign: no campaign ${p.campaign}`);
      return buildReport(c);
    });
    this.on(api.reportExport, async (p) => this.exportReport(p.campaign, p.format));
    this.on(api.auditList, async (p) => ({ entries: this.audit.list(p.limit) }));
    this.on(api.auditVerify, async () => {
      const v = this.audit.verify();
      this.record('audit/verify', { ok: v.ok, entries: v.entries, broken_at: v.broken_at });
      return v;
    });
    this.on(api.auditHosts, async (p) => {
      const hosts = (await this.hostJournals(p.hosts)).map((j) => j.audit);
      this.record('audit/hosts', { hosts: hosts.map((h) => ({ host: h.host, entries: h.entries, intact: h.intact, why: h.problem?.why ?? h.error })) });
      return { hosts };
    });
    this.on(api.auditHostsExport, async (p) => {
      this.record('audit/hosts-export', { format: p.format, hosts: p.hosts ?? 'all' });
      const content = exportJournals(await this.hostJournals(p.hosts), p.format);
      return { filename: `hitless-host-journals.${p.format}`, mime: p.format === 'json' ? 'application/json' : 'text/csv', content, base64: false };
    });
    this.on(api.auditExport, async (p) => {
      this.record('audit/export', { format: p.format });
      return p.format === 'json'
        ? { filename: 'hitless-audit.json', mime: 'application/json', content: this.audit.exportJson(), base64: false }
        : { filename: 'hitless-audit.csv', mime: 'text/csv', content: this.audit.exportCsv(), base64: false };
    });
  }

  /**
   * The host's keeper replaced under its live sessions by the binary its host package installed
   * (agent keeper/upgrade, DESIGN §14): an approver's act, once per host, recorded in the audit
   * log whatever the outcome. The agent runs it between the steps of an upgrade under way.
   */
  async upgradeKeeper(host: string): Promise<KeeperUpgraded & { host: string }> {
    if (!this.mayApprove()) throw new Error(`keeper/upgrade: ${this.opts.operator} is not one of the approvers (${this.opts.approvers!.join(', ')})`);
    const conn = this.conns.get(host);
    if (!conn) throw new Error(`keeper/upgrade: no host ${host} in the fleet`);
    try {
      // the operator's act, signed for the host's agent like a campaign's keeper step
      const st = await conn.request(agent.upgradeStatus, {});
      const at = new Date().toISOString();
      const signed = await this.sign(host, { campaign: `keeper-${at}`, kind: 'keeper', host: st.host, vms: [], release: st.active?.release ?? 'none', mode: 'handoff', decision: 'approve', reason: 'keeper upgrade', budget: null, decided: at, context: contextDigest({ host: st.host, action: 'keeper/upgrade', at }) });
      const r = await conn.request(agent.keeperUpgrade, signed ? { approval: signed } : {});
      this.record('keeper/upgrade', { host, upgraded: true, from_version: r.from_version, version: r.version, from_pid: r.from_pid, pid: r.pid, pause_us: r.pause_us, sessions: r.sessions });
      await conn.refresh(true).catch(() => undefined);
      this.push(pushes.fleet, { hosts: this.rows() });
      return { host, ...r };
    } catch (e) {
      this.record('keeper/upgrade', { host, upgraded: false, error: (e as Error).message });
      throw new Error(`keeper/upgrade: ${host}: ${(e as Error).message}`);
    }
  }

  /** A release of the library, by its file name (the API's renderer side names no path). */
  private async libraryRelease(file: string): Promise<LocalRelease> {
    const dir = this.opts.releaseLibrary;
    if (!dir) throw new Error('this console has no release library (dist/, or the desktop app\'s resources)');
    if (!libraryFiles(dir).includes(file)) throw new Error(`${file}: no such release tar in ${dir}`);
    return readLocalRelease(join(dir, file));
  }

  /**
   * A signed release uploaded to each host in turn and installed by its agent (releaseUpload.ts),
   * each recorded in the audit log whatever the outcome; afterwards each host's agent must list
   * it. tar: a file of the release library (release/upload), or the path the CLI's operator
   * gave. A host that fails is said in its row; the others go on.
   */
  async uploadRelease(hosts: string[], local: LocalRelease, tar: string, progress?: (host: string, sent: number, total: number) => void): Promise<UploadResult> {
    const out: UploadResult['hosts'] = [];
    for (const host of hosts) {
      const what = { host, file: local.file, sha256: local.sha256, release: local.release };
      try {
        const conn = this.conns.get(host);
        if (!conn) throw new Error(`no host ${host} in the fleet`);
        const r = await uploadRelease(conn, tar, progress && ((sent, total) => progress(host, sent, total)));
        this.record('release/upload', { ...what, installed: r.installed, signer: r.signer });
        // the version check: the host's agent lists it now
        await conn.refresh(false);
        if (!conn.row.releases.includes(r.release)) throw new Error(`the agent does not list release ${r.release} after installing it`);
        out.push({ host, release: r.release, installed: r.installed, signer: r.signer, error: null });
      } catch (e) {
        this.record('release/upload', { ...what, error: (e as Error).message });
        out.push({ host, release: local.release, installed: false, signer: null, error: (e as Error).message });
      }
    }
    return { sha256: local.sha256, hosts: out };
  }

  /** Progress of copies to hosts, pushed to the renderer at most once per whole 5% (and at the end). */
  private transferPush(op: Transfer['op'], file: string): (host: string, sent: number, total: number) => void {
    const last = new Map<string, number>();
    return (host, sent, total) => {
      const step = total > 0 ? Math.floor((sent / total) * 20) : 20;
      if (step === last.get(host)) return;
      last.set(host, step);
      this.push(pushes.transfer, { op, host, file, sent, total });
    };
  }

  /** The library's host package (the API's renderer side names no file at all). */
  private async libraryPackage(): Promise<{ local: LocalPackage; deb: string }> {
    const deb = libraryPackageFile(this.opts.releaseLibrary ?? null);
    if (!deb) throw new Error(`this console's library (${this.opts.releaseLibrary ?? 'none'}) has no host package (hitless-host_<v>_<arch>.deb: make package)`);
    return { local: await readLocalPackage(deb), deb };
  }

  /** Why the agent of host may not be replaced now, or null. Between steps it may: the campaign
   * (or the host) paused, the new agent takes over from the host's journal. */
  private agentBusy(host: string): string | null {
    if (this.installing.has(host)) return `an install on ${host} is under way`;
    if (this.conns.get(host)?.busy) return `a step on ${host} is under way through its agent: wait for it to end`;
    for (const r of this.runs.values()) {
      const h = r.c.hosts.find((x) => x.host === host);
      if (!h || r.c.state !== 'running' || !r.busy) continue;
      const paused = h.paused || r.c.waves_paused.includes(h.wave);
      if (!paused && !['committed', 'held', 'rolled-back', 'failed', 'aborted', 'skipped'].includes(h.state)) return `campaign ${r.c.id} is running on ${host}: pause it (or the host) first; the agent is replaced between steps and the campaign resumes where it stopped`;
    }
    return null;
  }

  /**
   * The host package installed on each host in turn (agentInstall.ts), then the host's agent
   * session reconnected: the new agent must answer with the package's version. Each host is in
   * the audit log whatever the outcome; a host that fails is said in its row, the others go on.
   */
  async installAgent(hosts: string[], local: LocalPackage, deb: string, progress?: (host: string, sent: number, total: number) => void): Promise<InstallResult> {
    const out: InstallResult['hosts'] = [];
    const want = upstreamVersion(local.version);
    for (const host of hosts) {
      const what = { host, file: local.file, sha256: local.sha256, version: local.version };
      try {
        const conn = this.conns.get(host);
        if (!conn) throw new InstallRefused(`no host ${host} in the fleet`);
        const busy = this.agentBusy(host);
        if (busy) throw new InstallRefused(busy);
        this.installing.add(host);
        try {
          await installOnHost(conn, local, deb, progress && ((sent, total) => progress(host, sent, total)));
        } finally {
          this.installing.delete(host);
        }
        // the version check: a new agent process, on the new executable, answering; not while
        // a step runs (a campaign resumed during the copy): the old agent finishes it first
        for (const end = Date.now() + AGENT_IDLE_WAIT_MS; this.agentBusy(host); ) {
          if (Date.now() > end) throw new Error(`installed, but ${host}'s agent stayed busy (${this.agentBusy(host)}): the new one starts when the console reconnects to it`);
          await new Promise((r) => setTimeout(r, 100));
        }
        await conn.reconnect();
        if (conn.row.conn !== 'connected') throw new Error(`installed, but ${host}'s agent does not answer: ${conn.row.problem ?? conn.row.conn}`);
        if (conn.row.agent_version !== want) throw new Error(`installed, but ${host}'s agent says version ${conn.row.agent_version}, not ${want}`);
        this.record('agent/install', { ...what, installed: true, agent_version: conn.row.agent_version });
        out.push({ host, installed: true, agent_version: conn.row.agent_version, error: null });
      } catch (e) {
        this.record('agent/install', { ...what, installed: false, error: (e as Error).message });
        out.push({ host, installed: false, agent_version: this.conns.get(host)?.row.agent_version ?? null, error: (e as Error).message });
      }
    }
    return { sha256: local.sha256, version: local.version, hosts: out };
  }

  private record(action: string, detail: Record<string, unknown>): void {
    this.audit.append(this.opts.operator, action, detail);
  }

  // ---------------------------------------------------------------- fleet

  private addConn(h: ReturnType<FleetStore['list']>[number]): HostConn {
    const c = new HostConn(
      h,
      {
        sshConfig: this.opts.sshConfig,
        knownHosts: this.opts.knownHosts,
        limiter: this.limiter,
        keepaliveMs: 5000,
        timeoutMs: 10000,
        passphrase: (host) => this.passphrases.get(host) ?? this.opts.secrets?.get(`passphrase:${host}`) ?? null,
        ...(this.opts.askPassphrase
          ? {
              // asked once per key file and session, then kept in memory
              askPassphrase: async (host: string, file: string) => {
                const p = this.passphrases.get(`file:${file}`) ?? (await this.opts.askPassphrase!(host, file));
                if (p) this.passphrases.set(`file:${file}`, p);
                return p;
              },
            }
          : {}),
      },
      {
        changed: () => this.fleetChanged(),
        traffic: (host, samples) => this.push(pushes.traffic, { host, samples }),
        measurement: (host, m, at) => {
          const run = [...this.runs.values()].find((r) => r.busy && r.c.hosts.some((x) => x.host === host));
          this.push(pushes.measurement, { host, campaign: run?.c.id ?? null, at, measurement: m });
        },
      },
    );
    this.conns.set(h.name, c);
    if (this.opts.connectAll !== false) void c.connect();
    return c;
  }

  private conn(name: string): HostConn {
    const c = this.conns.get(name);
    if (!c) throw new Error(`name: no host ${name} in the fleet`);
    return c;
  }

  private row(name: string): HostRow {
    const r = this.conn(name).snapshot();
    const run = [...this.runs.values()].find((x) => ['running', 'paused'].includes(x.c.state) && x.c.hosts.some((h) => h.host === name));
    return { ...r, campaign: run?.c.id ?? null };
  }

  rows(): HostRow[] {
    return [...this.conns.keys()].map((n) => this.row(n));
  }

  private async addHost(p: z.output<typeof api.fleetAdd.params>): Promise<HostRow> {
    this.fleet.add({ ...p, source: 'manual' });
    this.record('fleet/add', { host: p.name, ssh: p.ssh, group: p.group });
    const c = this.addConn(this.fleet.get(p.name)!);
    await c.connect();
    return this.row(p.name);
  }

  private async importHosts(p: z.output<typeof api.fleetImport.params>) {
    let im;
    try {
      im = p.from === 'ssh-config' ? fromSshConfig(p.path, p.agent_command) : p.from === 'ansible' ? fromAnsible(p.path, p.agent_command) : fromLabFleet(p.path);
    } catch (e) {
      throw new Error(`fleet/import: path: ${(e as Error).message}`);
    }
    const busy = (name: string) => {
      const run = [...this.runs.values()].find((x) => x.busy && x.c.hosts.some((h) => h.host === name));
      return run ? `part of campaign ${run.c.id}, which is running: not updated` : null;
    };
    const r = this.fleet.merge(im, busy);
    for (const n of r.updated) {
      this.conns.get(n)?.close();
      this.conns.delete(n);
    }
    for (const n of [...r.added, ...r.updated]) this.addConn(this.fleet.get(n)!);
    this.record('fleet/import', { from: p.from, path: p.path, added: r.added, updated: r.updated, skipped: r.skipped });
    this.fleetChanged();
    return r;
  }

  private async removeHost(name: string) {
    const run = [...this.runs.values()].find((x) => x.busy && x.c.hosts.some((h) => h.host === name));
    if (run) throw new Error(`fleet/remove: name: ${name} is part of campaign ${run.c.id}, which is running`);
    this.fleet.remove(name);
    this.conn(name).close();
    this.conns.delete(name);
    this.record('fleet/remove', { host: name });
    this.fleetChanged();
    return { ok: true as const };
  }

  private async decideKey(name: string, fp: string, accept: boolean): Promise<HostRow> {
    const c = this.conn(name);
    await c.decideKey(fp, accept);
    this.record(accept ? 'hostkey/accept' : 'hostkey/reject', { host: name, fingerprint: fp });
    return this.row(name);
  }

  // ---------------------------------------------------------------- campaigns and approvals

  private loadCampaigns(): void {
    const dir = join(this.opts.stateDir, 'campaigns');
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
      try {
        const c = Campaign.parse(JSON.parse(readFileSync(join(dir, f), 'utf8')));
        // a console that went away mid-campaign: the hosts' agents know where they are
        if (c.state === 'running' || c.state === 'paused') {
          c.state = 'interrupted';
          c.error = 'the console stopped while this campaign ran; resume it to continue from where each host is';
        }
        for (const h of c.hosts) for (const v of h.vms) if (v.state === 'awaiting-approval' || v.state === 'switching') v.state = 'pending';
        this.runs.set(c.id, new CampaignRun(c, this.runDeps()));
      } catch (e) {
        console.error(`hitless-console: ${f}: not a campaign, ignored: ${(e as Error).message}`);
      }
    }
  }

  private saveCampaign(c: Campaign): void {
    const file = join(this.opts.stateDir, 'campaigns', `${c.id}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify(c, null, 2));
    renameSync(`${file}.tmp`, file);
  }

  private runDeps() {
    return {
      conn: (h: string) => this.conn(h),
      ask: (a: Approval) =>
        new Promise<Decision | null>((resolve) => {
          this.asks.set(a.id, { a, resolve });
          this.push(pushes.approvals, { approvals: this.pending() });
        }),
      cancelAsks: (campaign: string, host?: string) => {
        for (const [id, x] of this.asks)
          if (x.a.campaign === campaign && (host === undefined || x.a.host === host)) {
            this.asks.delete(id);
            x.resolve(null);
          }
        this.push(pushes.approvals, { approvals: this.pending() });
      },
      changed: (c: Campaign) => {
        this.saveCampaign(c);
        this.push(pushes.campaign, c);
        this.fleetChanged();
      },
      audit: (action: string, detail: Record<string, unknown>) => this.record(action, detail),
      sign: (host: string, facts: ApprovalFacts) => this.sign(host, facts),
    };
  }

  /** The hosts' journals, each fetched from its agent and verified (hostAudit.ts). */
  private hostJournals(hosts: string[] | undefined): Promise<HostJournal[]> {
    const names = hosts ?? [...this.conns.keys()];
    return Promise.all(
      names.map((h) => {
        const conn = this.conns.get(h);
        if (!conn) return this.journals.verify(h, null, `no host ${h} in the fleet`);
        const row = conn.snapshot();
        return this.journals.verify(h, row.conn === 'connected' ? conn : null, `not connected (${row.conn}${row.problem ? `: ${row.problem}` : ''})`);
      }),
    );
  }

  /** The operator's decision signed for host's agent (approvalSign.ts) with --identity, else
   * the identity file the console logs in to that host with; null when there is none. The
   * signature is audited here too. */
  private async sign(host: string, facts: ApprovalFacts): Promise<SignedApproval | null> {
    const conn = this.conns.get(host);
    const key = this.opts.identity ?? conn?.target().identityFiles.find((f) => existsSync(f)) ?? null;
    if (!key) return null;
    const signed = await signApproval(facts, key);
    this.record('approval/signed', { host, campaign: facts.campaign, kind: facts.kind, vms: facts.vms, decision: facts.decision, key });
    return signed;
  }

  private pending(): Approval[] {
    return [...this.asks.values()].map((x) => x.a).sort((a, b) => a.asked.localeCompare(b.asked));
  }

  private mayApprove(): boolean {
    return this.opts.approvers === null || this.opts.approvers.includes(this.opts.operator);
  }

  /** Each campaign host's judgement of the upgrade modes (upgrade/plan), where its agent answers. */
  private async modeOptions(spec: CampaignSpec): Promise<Map<string, UpgradePlan>> {
    const out = new Map<string, UpgradePlan>();
    await Promise.all(
      spec.hosts.map(async (h) => {
        const conn = this.conns.get(h);
        if (!conn || conn.snapshot().conn !== 'connected') return;
        try {
          out.set(h, await conn.request(agent.upgradePlan, { release: spec.release }));
        } catch {
          /* the plan then says why this host cannot be checked */
        }
      }),
    );
    return out;
  }

  private async startCampaign(spec: z.output<typeof api.campaignStart.params>): Promise<Campaign> {
    const plan = planCampaign(spec, this.rows(), await this.modeOptions(spec));
    if (plan.blockers.length) throw new Error(`campaign/start: ${plan.blockers.join('; ')}`);
    const busy = [...this.runs.values()].find((r) => r.busy && r.c.hosts.some((h) => spec.hosts.includes(h.host)));
    if (busy) throw new Error(`campaign/start: hosts: campaign ${busy.c.id} is running on some of these hosts`);
    const run = new CampaignRun(plan, this.runDeps());
    this.runs.set(run.c.id, run);
    this.record('campaign/start', { campaign: run.c.id, spec, waves: plan.waves.map((w) => ({ name: w.name, hosts: w.hosts.map((h) => h.host) })) });
    this.saveCampaign(run.c);
    run.start();
    return run.c;
  }

  private async control(p: z.output<typeof api.campaignControl.params>): Promise<Campaign> {
    const run = this.runs.get(p.id);
    if (!run) throw new Error(`campaign/control: id: no campaign ${p.id}`);
    this.record(`campaign/${p.action}`, { campaign: p.id, scope: p.scope });
    if (p.action === 'pause') run.pause(p.scope);
    else if (p.action === 'resume') run.resume(p.scope);
    else if (p.action === 'stop') await run.stop(`stopped by ${this.opts.operator}; every host stays where it is (resume to go on, or roll back)`);
    else await run.abort(p.scope);
    return run.c;
  }

  private async decide(id: string, decision: 'approve' | 'deny', reason: string) {
    if (!this.mayApprove()) throw new Error(`approval/decide: ${this.opts.operator} is not one of the approvers (${this.opts.approvers!.join(', ')})`);
    const x = this.asks.get(id);
    if (!x) throw new Error(`approval/decide: id: no pending approval ${id} (already decided, or its campaign was aborted)`);
    this.asks.delete(id);
    const d: Decision = { decision, reason, by: this.opts.operator, at: new Date().toISOString(), context: contextDigest(x.a) };
    this.record(`approval/${decision}`, { approval: id, campaign: x.a.campaign, kind: x.a.kind, host: x.a.host, vm: x.a.vm, wave: x.a.wave_name, reason });
    x.resolve(d);
    this.push(pushes.approvals, { approvals: this.pending() });
    return { ok: true as const };
  }

  // ---------------------------------------------------------------- rollback, reports

  private rollbackDeps(): RollbackDeps {
    return {
      conn: (h) => this.conns.get(h),
      campaign: (id) => this.runs.get(id)?.c,
      previousRelease: (host) => {
        const cs = [...this.runs.values()].map((r) => r.c).sort((a, b) => b.started.localeCompare(a.started));
        for (const c of cs) {
          const h = c.hosts.find((x) => x.host === host && x.state === 'committed');
          if (h) return h.from;
        }
        return null;
      },
      sign: (host, facts) => this.sign(host, facts),
    };
  }

  private async rollback(scope: z.output<typeof api.rollbackRun.params>['scope'], reason: string) {
    const plan = previewRollback(scope, this.rollbackDeps());
    if (plan.blockers.length) throw new Error(`rollback/run: ${plan.blockers.join('; ')}`);
    const busy = [...this.runs.values()].find((r) => r.busy && plan.steps.some((s) => r.c.hosts.some((h) => h.host === s.host)));
    if (busy) throw new Error(`rollback/run: campaign ${busy.c.id} is running on these hosts: pause or abort it first`);
    this.record('rollback/start', { scope, reason, steps: plan.steps.map((s) => ({ host: s.host, action: s.action, vms: s.vms })) });
    const res = await runRollback(plan, this.rollbackDeps(), { decision: 'approve', reason, by: this.opts.operator, at: new Date().toISOString() });
    const summary = res.ok ? 'ok: traffic verified' : `problems: ${[...res.errors, ...res.verify.filter((v) => !v.traffic).map((v) => `${v.host}/${v.vm}: no traffic`)].join('; ')}`;
    this.record('rollback/done', { scope, ok: res.ok, errors: res.errors });
    // the campaigns those hosts belong to say what happened to them
    const label = scope.level === 'vm' ? `vm ${scope.host}/${scope.vm}` : scope.level === 'host' ? `host ${scope.host}` : scope.level === 'wave' ? `wave ${scope.wave} of ${scope.campaign}` : `campaign ${scope.campaign}`;
    for (const run of this.runs.values()) {
      let touched = false;
      for (const s of plan.steps) {
        if (s.action === 'nothing') continue;
        const h = run.c.hosts.find((x) => x.host === s.host);
        if (!h || !['committed', 'held', 'failed', 'switching', 'aborted'].includes(h.state)) continue;
        touched = true;
        for (const v of h.vms) if (s.vms.includes(v.vm) && v.state === 'moved') v.state = 'rolled-back';
        if (scope.level !== 'vm') {
          h.state = 'rolled-back';
          h.error = `rolled back by ${this.opts.operator}: ${reason}`;
        }
      }
      if (touched) {
        run.c.rollbacks.push({ at: new Date().toISOString(), by: this.opts.operator, scope: `${label}: ${reason}`, result: summary });
        this.saveCampaign(run.c);
        this.push(pushes.campaign, run.c);
      }
    }
    this.fleetChanged();
    return res;
  }

  private async exportReport(id: string, format: 'html' | 'csv' | 'json' | 'pdf') {
    const c = this.runs.get(id)?.c;
    if (!c) throw new Error(`report/export: campaign: no campaign ${id}`);
    this.record('report/export', { campaign: id, format });
    const name = `hitless-${id}`;
    if (format === 'json') return { filename: `${name}.json`, mime: 'application/json', content: renderJson(c), base64: false };
    if (format === 'csv') return { filename: `${name}.csv`, mime: 'text/csv', content: renderCsv(c), base64: false };
    if (format === 'html') return { filename: `${name}.html`, mime: 'text/html', content: renderHtml(c), base64: false };
    if (!this.opts.pdf) throw new Error('report/export: format: PDF needs Chromium on this machine (apt install chromium) or the desktop app');
    const pdf = await this.opts.pdf(renderHtml(c));
    return { filename: `${name}.pdf`, mime: 'application/pdf', content: pdf.toString('base64'), base64: true };
  }
}
