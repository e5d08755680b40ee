// The console API, defined once: every request the renderer makes of the console core and
// every snapshot the core pushes back, as one object (method + zod schemas + types,
// protocol/rpc.ts). Both transports carry exactly these messages: Electron IPC (preload
// bridge) and browser mode's WebSocket. Pure: no node, electron or DOM imports; the renderer,
// the core and the Electron main process all import it.
import { z } from 'zod';
import { Exposed, Failover, GenRef, KeeperUpgraded, KeeperVersions, ModeChoice, ModeOption, UpgradeState } from './agent.js';
import { UpgradeMode } from './files.js';
import { Budget, Measurement, UpgradeLoss } from './measure.js';
import { HostName, Name as VmName, Version } from './names.js';
import { byMethod, notification, request, type AnyRequest, type Notification } from './rpc.js';

const int = z.number().int();
const Empty = z.object({}).strict();
const Ok = z.object({ ok: z.literal(true) });
const Reason = z.string().trim().min(1, 'a reason is required').max(500, 'at most 500 characters');
const Id = z.string().regex(/^[a-z0-9-]{1,40}$/, 'an id');

// ---------------------------------------------------------------- fleet

export const HostSource = z.enum(['fleet-file', 'ssh-config', 'ansible', 'manual']);

/** Where a host is and how to reach its agent; persisted in the console's fleet. */
export const HostPackageTarget = z.discriminatedUnion('method', [
  z.object({ method: z.literal('dpkg') }).strict(),
  z
    .object({
      method: z.literal('unpack'),
      dir: z
        .string()
        .max(200)
        .regex(/^(\/[A-Za-z0-9_.-]+)+$/, 'an absolute path of letters, digits, _ . - (no trailing /)')
        .refine((d) => !d.split('/').some((x) => x === '.' || x === '..'), 'no . or .. in the path'),
    })
    .strict(),
]);
export type HostPackageTarget = z.infer<typeof HostPackageTarget>;

export const HostEntry = z
  .object({
    name: HostName,
    source: HostSource,
    /** alias resolved through the ssh config (Host blocks), or an explicit address */
    ssh: z.union([
      z.object({ alias: z.string().min(1), config: z.string().min(1).nullable() }).strict(),
      z
        .object({
          host: z.string().min(1).max(253).regex(/^[A-Za-z0-9.:_-]+$/, 'a host name or IP address'),
          port: int.min(1).max(65535),
          user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'a user name'),
          identity: z.string().min(1).nullable(),
        })
        .strict(),
    ]),
    /** the command SSH runs to start the agent (speaks JSON-RPC on stdio) */
    agent_command: z.string().min(1).max(1000),
    /** rack, pair or group from the inventory: two hosts of one group never upgrade at once */
    group: z.string().max(64).nullable(),
    /** how the host package (the agent, the keeper) is installed on it: dpkg -i (as root, or
     * through sudo), or unpacked into a directory of its own where hosts share one filesystem
     * (the lab) */
    host_package: HostPackageTarget.default({ method: 'dpkg' }),
  })
  .strict();
export type HostEntry = z.infer<typeof HostEntry>;

export const ConnState = z.enum(['connecting', 'connected', 'unreachable', 'hostkey-unknown', 'hostkey-changed', 'disconnected']);
export type ConnState = z.infer<typeof ConnState>;

export const VmRow = z.object({
  vm: z.string(),
  serving: z.string().nullable(),
  release: z.string().nullable(),
  connected: z.boolean(),
  moved: z.boolean(),
  /** the last switch the console saw for this VM (this session or the agent's history) */
  last: Measurement.nullable(),
  /** frames/s to and from the VM, from the datapath's counters (null before two samples) */
  rx_pps: z.number().nullable(),
  tx_pps: z.number().nullable(),
});
export type VmRow = z.infer<typeof VmRow>;

/** One row of the fleet table: everything the console knows about a host right now. */
export const HostRow = z.object({
  name: z.string(),
  source: HostSource,
  address: z.string(),
  group: z.string().nullable(),
  conn: ConnState,
  /** why the host is not connected, in words (host key changed, refused, timeout ...) */
  problem: z.string().nullable(),
  /** an unknown host key waiting for the operator's decision */
  pending_key: z.object({ type: z.string(), fingerprint: z.string() }).nullable(),
  next_retry_ms: int.nullable(),
  agent_version: z.string().nullable(),
  /** how the host's keeper and generations run (systemd units or detached processes), as its agent says */
  supervisor: z.string().nullable(),
  releases: z.array(z.string()),
  active: GenRef.nullable(),
  target: GenRef.nullable(),
  state: UpgradeState.nullable(),
  /** how the host's current (or last) upgrade moves its VMs */
  mode: UpgradeMode.default('handoff'),
  error: z.string().nullable(),
  health: z.object({ ok: z.boolean(), problems: z.array(z.string()) }).nullable(),
  /** the keeper's standby generation (where sessions go if theirs dies), if any */
  standby: z.string().nullable().default(null),
  /** the keeper running and the one installed (null: an agent without keeper/versions) */
  keeper: KeeperVersions.nullable().default(null),
  /** a generation died and no replacement runs yet: a further crash takes the VMs' links down */
  exposed: Exposed.nullable().default(null),
  /** the host's last generation deaths (the agent's journal), newest last */
  failovers: z.array(Failover).default([]),
  vms: z.array(VmRow),
  /** largest break of the last switches the console saw on this host (ms) */
  last_break_ms: z.number().nullable(),
  campaign: z.string().nullable(),
});
export type HostRow = z.infer<typeof HostRow>;

// ---------------------------------------------------------------- campaigns

export const ApprovalMode = z.enum(['each-vm', 'each-wave', 'auto']);
export type ApprovalMode = z.infer<typeof ApprovalMode>;

export const CampaignSpec = z
  .object({
    hosts: z.array(HostName).min(1, 'pick at least one host'),
    release: Version,
    /** the host upgraded alone first; a failure there stops everything */
    canary: HostName.nullable(),
    /** hosts per wave after the canary */
    batch: int.min(1, 'at least 1 host per wave').max(64),
    approval: ApprovalMode,
    budget: Budget,
    /** how hosts move: handoff (new generation, VM by VM), swap (stage replaced in place, the
     * host's VMs at once; only where core and DPDK match), auto (the agent's recommendation) */
    mode: ModeChoice.default('handoff'),
    /** per-host exceptions to mode */
    host_modes: z.record(HostName, ModeChoice).default({}),
  })
  .strict();
export type CampaignSpec = z.infer<typeof CampaignSpec>;

/** A host's keeper replaced before its VMs move (its host package installed a new one): asked
 * once for the host, like a swap */
export const KeeperStep = z.object({ from: z.string(), to: z.string(), predicted_pause_us: z.number(), basis: z.string() });
export type KeeperStep = z.infer<typeof KeeperStep>;
export const PlanHost = z.object({
  host: z.string(),
  group: z.string().nullable(),
  from: z.string().nullable(),
  /** the release whose process core runs the host's generation (differs from `from` after a swap) */
  core: z.string().nullable().default(null),
  vms: z.array(z.string()),
  mode: UpgradeMode.default('handoff'),
  /** the agent's judgement of each mode for this host (empty: it was not asked) */
  options: z.array(ModeOption).default([]),
  /** the mode its agent recommends (null: it was not asked) */
  recommended: UpgradeMode.nullable().default(null),
  /** expected break per VM (us) in the chosen mode, null when unknown */
  predicted_break_us: z.number().nullable().default(null),
  /** its keeper is due for replacement: replaced first (null: not due) */
  keeper: KeeperStep.nullable().default(null),
});
export const PlanWave = z.object({ index: int, name: z.string(), hosts: z.array(PlanHost) });
export type PlanWave = z.infer<typeof PlanWave>;
export const Plan = z.object({
  spec: CampaignSpec,
  waves: z.array(PlanWave),
  /** things that stop the campaign from starting (unreachable host, unknown release ...) */
  blockers: z.array(z.string()),
  notes: z.array(z.string()),
});
export type Plan = z.infer<typeof Plan>;

export const VmProgress = z.enum(['pending', 'awaiting-approval', 'switching', 'moved', 'denied', 'rolled-back', 'failed']);
export const HostProgress = z.enum(['pending', 'preparing', 'switching', 'committed', 'held', 'rolled-back', 'failed', 'aborted', 'skipped']);
export type HostProgress = z.infer<typeof HostProgress>;

export const Decision = z.object({
  decision: z.enum(['approve', 'deny']),
  reason: z.string(),
  by: z.string(),
  at: z.string(),
  /** sha256 of what the operator was shown (the approval asked): signed with the decision */
  context: z.string().optional(),
});
export type Decision = z.infer<typeof Decision>;

export const CampaignVm = z.object({
  vm: z.string(),
  state: VmProgress,
  measurement: Measurement.nullable(),
  decision: Decision.nullable(),
});
export const CampaignHost = z.object({
  host: z.string(),
  wave: int,
  state: HostProgress,
  paused: z.boolean(),
  from: z.string().nullable(),
  to: z.string().nullable(),
  mode: UpgradeMode.default('handoff'),
  vms: z.array(CampaignVm),
  error: z.string().nullable(),
  /** what the host's VMs lost over its upgrade, switch windows or not (its agent's witness;
   * null: not finished, or not counted) */
  loss: UpgradeLoss.nullable().default(null),
  /** its keeper replaced before its VMs moved (null: not due, denied, or not yet) */
  keeper: KeeperUpgraded.nullable().default(null),
});
export type CampaignHost = z.infer<typeof CampaignHost>;

/** One operator decision in a campaign: a VM's switch, or a whole wave (each-wave mode). */
export const CampaignDecision = Decision.extend({ kind: z.enum(['vm', 'host', 'wave', 'keeper']), wave: int, wave_name: z.string(), host: z.string().nullable(), vm: z.string().nullable() });
export type CampaignDecision = z.infer<typeof CampaignDecision>;

export const CampaignState = z.enum(['running', 'paused', 'done', 'stopped', 'aborted', 'failed', 'interrupted']);
export const Campaign = z.object({
  id: z.string(),
  plan: Plan,
  state: CampaignState,
  /** the wave being worked on (index into plan.waves) */
  wave: int,
  waves_paused: z.array(int),
  hosts: z.array(CampaignHost),
  started: z.string(),
  finished: z.string().nullable(),
  error: z.string().nullable(),
  rollbacks: z.array(z.object({ at: z.string(), by: z.string(), scope: z.string(), result: z.string() })),
  decisions: z.array(CampaignDecision).default([]),
});
export type Campaign = z.infer<typeof Campaign>;

export const Approval = z.object({
  id: z.string(),
  campaign: z.string(),
  /** vm: one VM's handoff; host: a stage swap moving all of a host's VMs at once; wave; keeper:
   * the host's keeper replaced before its VMs move */
  kind: z.enum(['vm', 'host', 'wave', 'keeper']),
  host: z.string().nullable(),
  vm: z.string().nullable(),
  wave: int,
  wave_name: z.string(),
  asked: z.string(),
  release: z.string(),
  budget: Budget,
  /** what the campaign measured so far: the canary's VMs and the VMs before this one */
  canary: z.object({ host: z.string(), vms: int, max_gap_ms: z.number().nullable(), lost: int }).nullable(),
  previous: Measurement.nullable(),
  /** for a wave: the hosts and VMs it will move */
  moves: z.array(z.object({ host: z.string(), vms: z.array(z.string()) })),
  mode: UpgradeMode.default('handoff'),
  /** the plan's expected break per VM (us), null when unknown */
  predicted_break_us: z.number().nullable().default(null),
  /** kind keeper: which keeper replaces which, and its expected control pause */
  keeper: KeeperStep.nullable().default(null),
});
export type Approval = z.infer<typeof Approval>;

/** pause: hold before the next move; resume; stop: end the run, every host stays where it is
 * (resumable); abort: undo every host not yet committed */
export const ControlAction = z.enum(['pause', 'resume', 'stop', 'abort']);
export const ControlScope = z.discriminatedUnion('level', [
  z.object({ level: z.literal('campaign') }).strict(),
  z.object({ level: z.literal('wave'), wave: int.min(0) }).strict(),
  z.object({ level: z.literal('host'), host: HostName }).strict(),
]);

// ---------------------------------------------------------------- rollback

export const RollbackScope = z.discriminatedUnion('level', [
  z.object({ level: z.literal('vm'), host: HostName, vm: VmName }).strict(),
  z.object({ level: z.literal('host'), host: HostName }).strict(),
  z.object({ level: z.literal('wave'), campaign: Id, wave: int.min(0) }).strict(),
  z.object({ level: z.literal('campaign'), campaign: Id }).strict(),
]);
export type RollbackScope = z.infer<typeof RollbackScope>;

export const RollbackStep = z.object({
  host: z.string(),
  /** what the host's agent will be asked to do */
  action: z.enum(['move-back', 'retire-target', 'downgrade', 'nothing']),
  vms: z.array(z.string()),
  from: z.string().nullable(),
  to: z.string().nullable(),
  why: z.string(),
});
export const RollbackPlan = z.object({ scope: RollbackScope, steps: z.array(RollbackStep), blockers: z.array(z.string()) });
export type RollbackPlan = z.infer<typeof RollbackPlan>;
export const RollbackResult = z.object({
  plan: RollbackPlan,
  ok: z.boolean(),
  /** per host: where each VM is afterwards and whether traffic flows to it */
  verify: z.array(z.object({ host: z.string(), vm: z.string(), serving: z.string().nullable(), release: z.string().nullable(), rx_pps: z.number().nullable(), traffic: z.boolean() })),
  errors: z.array(z.string()),
});
export type RollbackResult = z.infer<typeof RollbackResult>;

// ---------------------------------------------------------------- reports, audit

/** A campaign's figures, computed once by the core: the screen and every export show these. */
const PercentilesMs = z.object({ n: int, p50: z.number().nullable(), p99: z.number().nullable(), max: z.number().nullable() });

/** A campaign's figures, computed once by the core from its rows (protocol/measure.ts
 * headline): the screen and every export show these. */
export const ReportSummary = z.object({
  campaign: z.string(),
  release: z.string(),
  state: z.string(),
  started: z.string(),
  finished: z.string().nullable(),
  budget: Budget,
  hosts: z.array(
    z.object({
      host: z.string(),
      wave: z.string(),
      before: z.string().nullable(),
      after: z.string().nullable(),
      state: z.string(),
      error: z.string().nullable(),
      /** frames its VMs lost over its upgrade (prepare to commit or rollback), switch windows or not; null: not counted */
      lost: int.nullable().default(null),
      /** of those, what none of its rows counts (protocol/measure lostOutside) */
      lost_outside: int.nullable().default(null),
    }),
  ),
  vms: int,
  moved: int,
  denied: int,
  /** the rows' lost plus what the hosts lost outside them (hosts[].lost_outside) */
  lost: int,
  /** of lost, what no row counts: lost during the hosts' upgrades outside every switch */
  lost_outside: int.default(0),
  /** rows whose lost is the datapath's drop count (no traffic witness on their host) */
  lost_from_datapath: int,
  over_budget: int,
  break_ms: PercentilesMs,
  /** receive gaps of the same run that touched no switch (the machine's noise) */
  background_gap_ms: PercentilesMs,
});
export type ReportSummary = z.infer<typeof ReportSummary>;

/** One VM's row: its switch's figures as the agent measured and judged them. */
export const ReportVm = z.object({
  host: z.string(),
  vm: z.string(),
  state: z.string(),
  /** how the VM moved (null: it did not) */
  mode: UpgradeMode.nullable(),
  from: z.string().nullable(),
  to: z.string().nullable(),
  /** handoff: the keeper's window; swap: the packet loop's */
  window_us: z.number().nullable(),
  passive_gap_us: z.number().nullable(),
  /** the witness's receive gap towards / from the VM (null: none over its threshold, or no witness) */
  rx_gap_ms: z.number().nullable(),
  tx_gap_ms: z.number().nullable(),
  break_ms: z.number().nullable(),
  break_basis: z.string().nullable(),
  break_loss_ms: z.number().nullable(),
  lost: int.nullable(),
  lost_basis: z.string().nullable(),
  delayed: int.nullable(),
  dropped: int.nullable(),
  within_budget: z.boolean().nullable(),
  decision: z.string().nullable(),
  by: z.string().nullable(),
  reason: z.string().nullable(),
});
export type ReportVm = z.infer<typeof ReportVm>;
export const Report = z.object({ summary: ReportSummary, vms: z.array(ReportVm), decisions: z.array(CampaignDecision), rollbacks: Campaign.shape.rollbacks });
export type Report = z.infer<typeof Report>;

/** A measured switch and when the console (or, from the host's journal, the agent) saw it: epoch ms. */
export const Mark = z.object({ at: z.number(), measurement: Measurement });
export type Mark = z.infer<typeof Mark>;

export const ReportFormat = z.enum(['html', 'csv', 'json', 'pdf']);
export const Export = z.object({ filename: z.string(), mime: z.string(), /** text, or base64 for pdf */ content: z.string(), base64: z.boolean() });

export const AuditEntry = z.object({
  seq: int,
  at: z.string(),
  actor: z.string(),
  action: z.string(),
  detail: z.record(z.unknown()),
  prev: z.string(),
  hash: z.string(),
});
export type AuditEntry = z.infer<typeof AuditEntry>;
export const AuditVerify = z.object({ ok: z.boolean(), entries: int, broken_at: int.nullable(), reason: z.string().nullable() });

/** A host's journal as this console checked it (protocol/chain.ts): its chain, and whether it
 * still holds the last head this console saw there (a cut tail does not). */
export const HostAudit = z.object({
  host: z.string(),
  /** lines, of which unchained were written before the chain began, and signed are approvals
   * or denials the agent verified against its approvers file */
  entries: int,
  unchained: int,
  signed: int,
  intact: z.boolean(),
  head: z.object({ seq: int, hash: z.string() }).nullable(),
  /** the head this console saw there before (null: never looked) */
  seen: z.object({ seq: int, hash: z.string(), at: z.string() }).nullable(),
  problem: z.object({ line: int, seq: int.nullable(), text: z.string(), why: z.string() }).nullable(),
  /** the host verifies signed approvals (it has an approvers file) */
  approvers: z.boolean(),
  /** the journal could not be read (the host is not connected, ...) */
  error: z.string().nullable(),
});
export type HostAudit = z.infer<typeof HostAudit>;

/** A rate sample of one VM, for the live chart. t: ms since the epoch. */
export const TrafficSample = z.object({ vm: z.string(), t: z.number(), rx_pps: z.number(), tx_pps: z.number(), dropped: int });
export type TrafficSample = z.infer<typeof TrafficSample>;

export const Session = z.object({ operator: z.string(), may_approve: z.boolean(), transport: z.enum(['electron', 'browser']), version: z.string() });

/** A release tar in the console's release library (the packages it carries for hosts: dist/,
 * or the desktop app's resources), as its release.json says (the host verifies it). */
export const LibraryRelease = z.object({ file: z.string(), bytes: int, sha256: z.string(), release: z.string(), kind: z.string() });
export type LibraryRelease = z.infer<typeof LibraryRelease>;
/** A file of the library, by name only: the renderer never names a path. */
const LibraryFile = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,200}\.tar$/, 'a release tar of the library, by file name');
const UploadTo = z.object({ hosts: z.array(HostName).min(1).max(1000), file: LibraryFile }).strict();
export const UploadResult = z.object({
  sha256: z.string(),
  hosts: z.array(z.object({ host: z.string(), release: z.string(), installed: z.boolean(), signer: z.string().nullable(), error: z.string().nullable() })),
});
export type UploadResult = z.infer<typeof UploadResult>;

/** A copy to a host in progress, as the console pushes it. */
export const Transfer = z.object({ op: z.enum(['agent/install', 'release/upload']), host: z.string(), file: z.string(), sent: int, total: int });
export type Transfer = z.infer<typeof Transfer>;

/** The host package (hitless-host_<v>_<arch>.deb) of the console's library, as its control file says. */
export const LibraryPackage = z.object({ file: z.string(), bytes: int, sha256: z.string(), package: z.string(), version: z.string(), architecture: z.string(), depends: z.array(z.string()), installed_kb: int });
export type LibraryPackage = z.infer<typeof LibraryPackage>;
const InstallTo = z.object({ hosts: z.array(HostName).min(1).max(1000) }).strict();
export const InstallResult = z.object({
  sha256: z.string(),
  version: z.string(),
  hosts: z.array(z.object({ host: z.string(), installed: z.boolean(), agent_version: z.string().nullable(), error: z.string().nullable() })),
});
export type InstallResult = z.infer<typeof InstallResult>;

// ---------------------------------------------------------------- the API

export const api = {
  session: request('session/info', Empty, Session),

  fleetList: request('fleet/list', Empty, z.object({ hosts: z.array(HostRow) })),
  fleetAdd: request('fleet/add', HostEntry.omit({ source: true }).strict(), HostRow),
  fleetImport: request(
    'fleet/import',
    z.discriminatedUnion('from', [
      z.object({ from: z.literal('ssh-config'), path: z.string().min(1).nullable(), agent_command: z.string().min(1) }).strict(),
      z.object({ from: z.literal('ansible'), path: z.string().min(1), agent_command: z.string().min(1) }).strict(),
      z.object({ from: z.literal('fleet-file'), path: z.string().min(1) }).strict(),
    ]),
    z.object({ added: z.array(z.string()), updated: z.array(z.string()).default([]), skipped: z.array(z.object({ name: z.string(), why: z.string() })) }),
  ),
  fleetRemove: request('fleet/remove', z.object({ name: HostName }).strict(), Ok),
  hostConnect: request('host/connect', z.object({ name: HostName }).strict(), HostRow),
  hostKeyDecide: request('hostkey/decide', z.object({ name: HostName, fingerprint: z.string().min(1), accept: z.boolean() }).strict(), HostRow),
  /** the passphrase of the host's identity file: kept in the console's memory for this session,
   * and in the OS keyring (Electron safeStorage) only when remember is set */
  hostPassphrase: request('host/passphrase', z.object({ name: HostName, passphrase: z.string().min(1).max(1024), remember: z.boolean().default(false) }).strict(), HostRow),
  hostTraffic: request('host/traffic', z.object({ name: HostName }).strict(), z.object({ samples: z.array(TrafficSample), marks: z.array(Mark) })),

  campaignPreview: request('campaign/preview', CampaignSpec, Plan),
  campaignStart: request('campaign/start', CampaignSpec, Campaign),
  campaignList: request('campaign/list', Empty, z.object({ campaigns: z.array(Campaign) })),
  campaignControl: request('campaign/control', z.object({ id: Id, action: ControlAction, scope: ControlScope }).strict(), Campaign),

  approvalList: request('approval/list', Empty, z.object({ approvals: z.array(Approval) })),
  approvalDecide: request('approval/decide', z.object({ id: Id, decision: z.enum(['approve', 'deny']), reason: Reason }).strict(), Ok),

  releaseLibrary: request('release/library', Empty, z.object({ dir: z.string().nullable(), releases: z.array(LibraryRelease) })),
  /** what an upload of that release to those hosts copies and runs, before anything is sent */
  releasePreview: request('release/preview', UploadTo, z.object({ lines: z.array(z.string()) })),
  /** upload (SFTP over each host's connection) and install (the host's agent verifies it) */
  releaseUpload: request('release/upload', UploadTo, UploadResult),
  /** the host package the console installs (its library's hitless-host deb), if it has one */
  agentPackage: request('agent/package', Empty, z.object({ dir: z.string().nullable(), package: LibraryPackage.nullable() })),
  /** what installing it on those hosts checks, copies and runs, before anything is sent */
  agentPreview: request('agent/preview', InstallTo, z.object({ lines: z.array(z.string()) })),
  /** install or upgrade the agent: checks, SFTP, dpkg -i, then the new agent's version */
  agentInstall: request('agent/install', InstallTo, InstallResult),

  /** the host's keeper replaced under its sessions by the installed binary (agent keeper/upgrade) */
  keeperUpgrade: request('keeper/upgrade', z.object({ host: HostName }).strict(), KeeperUpgraded.extend({ host: z.string() })),

  rollbackPreview: request('rollback/preview', RollbackScope, RollbackPlan),
  rollbackRun: request('rollback/run', z.object({ scope: RollbackScope, reason: Reason }).strict(), RollbackResult),

  reportGet: request('report/get', z.object({ campaign: Id }).strict(), Report),
  reportExport: request('report/export', z.object({ campaign: Id, format: ReportFormat }).strict(), Export),

  auditList: request('audit/list', z.object({ limit: int.min(1).max(10000).default(500) }).strict(), z.object({ entries: z.array(AuditEntry) })),
  auditVerify: request('audit/verify', Empty, AuditVerify),
  auditExport: request('audit/export', z.object({ format: z.enum(['json', 'csv']) }).strict(), Export),
  /** Each host's journal (the authoritative audit) fetched from its agent and verified; the
   * heads seen are remembered, so a tail cut later is caught. hosts: default every host. */
  auditHosts: request('audit/hosts', z.object({ hosts: z.array(HostName).min(1).optional() }).strict(), z.object({ hosts: z.array(HostAudit) })),
  /** The hosts' journal lines with each host's verdict, as JSON or CSV (safe against formulas). */
  auditHostsExport: request('audit/hosts-export', z.object({ hosts: z.array(HostName).min(1).optional(), format: z.enum(['json', 'csv']) }).strict(), Export),
} as const;

/** What the core pushes: snapshots (about one per second per host), never a per-frame stream. */
export const pushes = {
  fleet: notification('push/fleet', z.object({ hosts: z.array(HostRow) })),
  campaign: notification('push/campaign', Campaign),
  approvals: notification('push/approvals', z.object({ approvals: z.array(Approval) })),
  traffic: notification('push/traffic', z.object({ host: z.string(), samples: z.array(TrafficSample) })),
  measurement: notification('push/measurement', z.object({ host: z.string(), campaign: z.string().nullable(), at: z.number(), measurement: Measurement })),
  /** a copy to a host under way (agent/install, release/upload): bytes sent of the file's */
  transfer: notification('push/transfer', Transfer),
} as const;

export type ApiMethods = typeof api;
export const requestByMethod: ReadonlyMap<string, AnyRequest> = byMethod(api);
export const pushByMethod: ReadonlyMap<string, Notification<z.ZodTypeAny>> = byMethod(pushes);

/** The envelope both transports carry. */
export const Envelope = z.discriminatedUnion('type', [
  z.object({ type: z.literal('request'), id: int.min(0), method: z.string().max(64), params: z.unknown() }).strict(),
  z.object({ type: z.literal('result'), id: int.min(0), result: z.unknown() }).strict(),
  z.object({ type: z.literal('error'), id: int.min(0), message: z.string() }).strict(),
  z.object({ type: z.literal('push'), method: z.string().max(64), params: z.unknown() }).strict(),
]);
export type Envelope = z.infer<typeof Envelope>;

/** The one thing a transport needs of the core: answer a request, deliver pushes. */
export interface Backend {
  handle(method: string, params: unknown): Promise<unknown>;
  subscribe(fn: (method: string, params: unknown) => void): () => void;
}
