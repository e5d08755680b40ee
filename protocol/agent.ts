// The console <-> agent protocol, defined once: every JSON-RPC method and notification is one
// object (method name + zod schemas + types, protocol/rpc.ts) that the agent, the CLI and the
// console import. Pure: no node, electron or DOM imports, so the renderer can use it too.
import { z } from 'zod';
import { Budget, Measurement, UpgradeLoss } from './measure.js';
import { DatapathKind, ReleaseManifest, UpgradeMode } from './files.js';
import { Name, Version } from './names.js';
import { notification, request } from './rpc.js';
import { SignedApproval } from './approval.js';

const int = z.number().int();

export const UpgradeState = z.enum(['idle', 'preparing', 'switching', 'committing', 'rolling-back', 'aborting', 'failed']);
export type UpgradeState = z.infer<typeof UpgradeState>;

/** core: the release whose process core runs the generation (differs after a swap) */
export const GenRef = z.object({
  gen: z.string(),
  release: z.string(),
  core: z.string().optional(),
  /** what runs it (absent: hitless-dp, as every agent from before datapath kinds ran) */
  kind: DatapathKind.optional(),
});

export const VmStatus = z.object({
  vm: z.string(),
  /** generation serving the VM now (keeper's view), null when its frontend is away */
  serving: z.string().nullable(),
  connected: z.boolean(),
  moved: z.boolean(),
  measurement: Measurement.nullable(),
});

/** A generation of the host died: what the keeper did at once, and what the agent restored. */
export const Failover = z.object({
  t: z.string(),
  gen: z.string(),
  cause: z.string(),
  /** sessions the keeper moved to the other generation */
  moved: z.array(z.object({ vm: z.string(), to: z.string() })),
  /** VMs no generation could take: their frontends saw the link go down */
  down: z.array(z.string()),
  /** frames the death took: inside the dead process (taken, not yet let out) and in its peer link
   * (handed in, never taken out by either side): the only loss a crash may cost */
  lost_inside: int.nullable(),
  /** the replacement generation: from the death to it ready as the standby, and to every VM let go connected again */
  restored: z.object({ gen: z.string(), took_ms: z.number(), outage_ms: z.number().nullable() }).nullable(),
  restore_error: z.string().nullable(),
});
export type Failover = z.infer<typeof Failover>;

/** The host runs without a way out for its VMs: a generation died and no replacement runs yet. */
export const Exposed = z.object({ gen: z.string(), since: z.string(), why: z.string() });
export type Exposed = z.infer<typeof Exposed>;

export const UpgradeStatus = z.object({
  host: z.string(),
  state: UpgradeState,
  mode: UpgradeMode.default('handoff'),
  active: GenRef.nullable(),
  target: GenRef.nullable(),
  approve: z.union([z.literal('each'), z.object({ auto: Budget })]),
  /** what the agent judges every switch of this upgrade against (null: none was given) */
  budget: Budget.nullable().default(null),
  vms: z.array(VmStatus),
  last_outcome: z.enum(['committed', 'rolled-back', 'aborted']).nullable(),
  error: z.string().nullable(),
  journal_seq: int,
  /** the keeper's standby generation (where sessions go if their generation dies), if any */
  standby: z.string().nullable().default(null),
  exposed: Exposed.nullable().default(null),
  /** the host's last generation deaths, newest last */
  failovers: z.array(Failover).default([]),
  /** VM ports in an OVS-DPDK host's DB that the agent could not put behind the keeper, and
   * why: they would lose their network with the generation serving them (commit refuses) */
  unmanaged: z.array(z.object({ port: z.string(), why: z.string() })).default([]),
  /** what the VMs lost over the last finished upgrade, prepare to commit or rollback (null:
   * none finished since the last prepare, or no witness counted it) */
  loss: UpgradeLoss.nullable().default(null),
});
export type UpgradeStatus = z.infer<typeof UpgradeStatus>;

export const HostInfo = z.object({
  host: z.string(),
  agent_version: z.string(),
  root: z.string(),
  releases: z.array(z.string()),
  active: GenRef.nullable(),
  keeper: z.object({ pid: int.nullable(), alive: z.boolean() }),
  state: UpgradeState,
  /** how the keeper and the generations run: systemd units, or detached processes, and why
   * (null: an agent from before this was reported) */
  supervisor: z.object({ mode: z.enum(['systemd', 'detached']), why: z.string() }).nullable().default(null),
});

export const GenInfo = z.object({
  gen: z.string(),
  release: z.string(),
  pid: int.nullable(),
  alive: z.boolean(),
  role: z.enum(['active', 'target', 'stale']),
});

/** A release tar the console uploaded, as the host's agent verified and installed it. */
export const ReleaseInstalled = z
  .object({
    release: Version,
    kind: DatapathKind,
    /** the allowed-signers principal whose key signed it (the host's release-signers) */
    signer: z.string(),
    files: int,
    /** false: the same release was installed already (and still verifies) */
    installed: z.boolean(),
  })
  .strict();
export type ReleaseInstalled = z.infer<typeof ReleaseInstalled>;

export const ReleaseInfo = z.object({
  version: z.string(),
  path: z.string(),
  /** null: the release has no readable manifest (manifest_error says why): handoff only */
  manifest: ReleaseManifest.nullable().default(null),
  manifest_error: z.string().optional(),
});

/** One way to upgrade this host to a release, as the agent judges it now. */
export const ModeOption = z.object({
  mode: UpgradeMode,
  available: z.boolean(),
  /** why it is or is not available, for the operator */
  reason: z.string(),
  /** expected forwarding break per VM (us): from this host's journal when it has enough, else the benchmarks */
  predicted_break_us: z.number(),
  basis: z.string(),
  approvals: z.enum(['per-vm', 'per-host']),
});
export type ModeOption = z.infer<typeof ModeOption>;

export const UpgradePlan = z.object({
  host: z.string(),
  release: z.string(),
  active: GenRef,
  modes: z.array(ModeOption),
  /** swap when available (the smaller break), else handoff */
  recommended: UpgradeMode,
});
export type UpgradePlan = z.infer<typeof UpgradePlan>;

/** prepare's mode: auto lets the agent choose (swap only when core and DPDK match) */
export const ModeChoice = z.enum(['auto', 'handoff', 'swap']);
export type ModeChoice = z.infer<typeof ModeChoice>;

/** The host's keeper: the one running (null: none) and the one the host package installed;
 * due: they differ (keeper/upgrade hands the sessions to the installed one). */
export const KeeperVersions = z.object({
  running: z.object({ pid: int, version: z.string(), state_format: int, sessions: int }).nullable(),
  installed: z.string().nullable(),
  due: z.boolean(),
  /** the expected control pause of replacing it (us), and what that figure rests on */
  predicted_pause_us: z.number(),
  basis: z.string(),
});
export type KeeperVersions = z.infer<typeof KeeperVersions>;

/** A keeper upgrade done: pause_us is how long the VMs' control messages waited (null when an
 * agent that stopped during it found it done). */
export const KeeperUpgraded = z.object({
  from_pid: int,
  pid: int,
  from_version: z.string(),
  version: z.string(),
  pause_us: int.nullable(),
  sessions: int,
  vms: int,
});
export type KeeperUpgraded = z.infer<typeof KeeperUpgraded>;

export const VmInfo = z.object({ vm: z.string(), mac: z.string(), serving: z.string().nullable(), connected: z.boolean() });

export const agent = {
  hostInfo: request('host/info', z.object({}).strict(), HostInfo),
  hostStart: request('host/start', z.object({ release: Version }).strict(), HostInfo),
  vmList: request('vm/list', z.object({}).strict(), z.object({ vms: z.array(VmInfo) })),
  releaseList: request('release/list', z.object({}).strict(), z.object({ releases: z.array(ReleaseInfo) })),
  /** Verify a signed release tar already on the host (uploaded over SFTP) against the host's
   * release-signers and install it; refused (Refused, naming why) leaves nothing installed. */
  releaseInstall: request('release/install', z.object({ tar: z.string().startsWith('/', 'an absolute path').max(4096) }).strict(), ReleaseInstalled),
  genList: request('gen/list', z.object({}).strict(), z.object({ gens: z.array(GenInfo) })),
  upgradePlan: request('upgrade/plan', z.object({ release: Version }).strict(), UpgradePlan),
  upgradePrepare: request(
    'upgrade/prepare',
    z
      .object({
        release: Version,
        approve: z.union([z.literal('each'), z.object({ auto: Budget }).strict()]).default('each'),
        /** the budget the agent judges each switch against (auto mode: its own budget) */
        budget: Budget.optional(),
        mode: ModeChoice.default('handoff'),
        /** the console's campaign this upgrade belongs to: approvals must name it */
        campaign: z.string().min(1).max(100).optional(),
        /** auto mode on a host with an approvers file: the signed approval of its budget */
        approval: SignedApproval.optional(),
      })
      .strict(),
    UpgradeStatus,
  ),
  /** Move these VMs (a VM's handoff, or every VM at once by stage swap); on a host with an
   * approvers file, only with an approval signed for exactly them (else Refused, nothing moves). */
  upgradeSwitch: request('upgrade/switch', z.object({ vms: z.array(Name).min(1), approval: SignedApproval.optional() }).strict(), UpgradeStatus),
  /** An operator's signed denial of these VMs' move: journaled, nothing changes. */
  upgradeDeny: request('upgrade/deny', z.object({ vms: z.array(Name).min(1), approval: SignedApproval }).strict(), UpgradeStatus),
  upgradeRun: request('upgrade/run', z.object({}).strict(), UpgradeStatus),
  upgradeRollback: request('upgrade/rollback', z.object({ vms: z.array(Name).min(1).optional() }).strict(), UpgradeStatus),
  upgradeCommit: request('upgrade/commit', z.object({}).strict(), UpgradeStatus),
  upgradeAbort: request('upgrade/abort', z.object({}).strict(), UpgradeStatus),
  upgradeStatus: request('upgrade/status', z.object({}).strict(), UpgradeStatus),
  keeperVersions: request('keeper/versions', z.object({}).strict(), KeeperVersions),
  keeperUpgrade: request('keeper/upgrade', z.object({ approval: SignedApproval.optional() }).strict(), KeeperUpgraded),
  /** The host's journal as written, line by line (hash-chained, protocol/chain.ts): the audit
   * record a console verifies. from: the first line to send (1-based). */
  journalRead: request(
    'journal/read',
    z.object({ from: int.min(1).default(1) }).strict(),
    z.object({ host: z.string(), path: z.string(), lines: z.array(z.string()), approvers: z.boolean() }),
  ),
  /** every switch the journal holds, oldest first: the host's own record of measured breaks */
  upgradeHistory: request(
    'upgrade/history',
    z.object({ limit: int.min(1).max(100000).default(10000) }).strict(),
    z.object({ switches: z.array(z.object({ seq: int, t: z.string(), vm: z.string(), to: z.string(), measurement: Measurement.nullable() })) }),
  ),
} as const;

/** Frames/s each VM received (the datapath put into its rings) and sent, over the last interval,
 * summed over the host's running generations; dropped: frames the datapath dropped for it. */
export const TrafficVm = z.object({ vm: z.string(), rx_pps: z.number(), tx_pps: z.number(), dropped: int });
export type TrafficVm = z.infer<typeof TrafficVm>;

export const events = {
  state: notification('event/state', UpgradeStatus),
  measurement: notification('event/measurement', z.object({ host: z.string(), measurement: Measurement })),
  health: notification('event/health', z.object({ host: z.string(), ok: z.boolean(), problems: z.array(z.string()) })),
  /** about once a second: per-VM rates from the datapath counters (t_ms: the agent's wall clock) */
  traffic: notification('event/traffic', z.object({ host: z.string(), t_ms: int, vms: z.array(TrafficVm) })),
} as const;

/** Error codes of the agent's JSON-RPC errors (besides JSON-RPC's own -32602 invalid params). */
export const AgentError = {
  InvalidState: -32001,
  UnknownRelease: -32002,
  UnknownVm: -32003,
  Failed: -32004,
  /** a release that is unsigned, tampered, from an unknown signer or of an unknown format; an
   * approval the host's approvers file does not vouch for */
  Refused: -32005,
} as const;
