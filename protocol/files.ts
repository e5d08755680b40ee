// The files Hitless reads that another part of it (or an operator) writes, each with one
// schema: a host's agent config (<root>/etc/agent.json), a release's manifest
// (releases/<version>/release.json, written by its build), and a fleet file (the lab writes
// one; the console and the CLI import it). Pure.
import { z } from 'zod';
import { Mac, Name, Version } from './names.js';

const int = z.number().int();
const absPath = z.string().startsWith('/', 'an absolute path');

/**
 * How a host moves to a release: handoff (a new generation beside the old one, each VM's vhost
 * session handed over, one VM at a time) or swap (the running generation replaces its
 * forwarding stage in place, every VM at once; only when the process core and DPDK match).
 */
export const UpgradeMode = z.enum(['handoff', 'swap']);
export type UpgradeMode = z.infer<typeof UpgradeMode>;

/** What runs a release's generations: Hitless's own datapath, or stock OVS-DPDK (DESIGN §12). */
export const DatapathKind = z.enum(['hitless-dp', 'ovs-dpdk']);
export type DatapathKind = z.infer<typeof DatapathKind>;

const HitlessDpManifest = z
  .object({
    release: Version,
    kind: z.literal('hitless-dp'),
    /** digest of the process core's sources and its DPDK: equal cores can swap stages */
    core: z.string().regex(/^[0-9a-f]{16}$/, 'a 16-digit hex digest'),
    dpdk: z.string().min(1),
    fwd: z.object({ abi: int, layout: int }).strict(),
    modes: z.array(UpgradeMode).min(1),
    /** a signed release (DESIGN.md §13): the manifest's format version and the sha256 of every
     * other file of the release, by its path in the release; release.json.sig signs this file */
    format: z.literal(1).optional(),
    files: z.record(z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 in hex')).optional(),
  })
  .strict();

/** An OVS-DPDK release: bin/ovs-vswitchd (unmodified), handed VMs by the keeper. */
const OvsDpdkManifest = z
  .object({
    release: Version,
    kind: z.literal('ovs-dpdk'),
    /** the version ovs-vswitchd reports, and the DPDK it was built with */
    ovs: z.string().min(1),
    dpdk: z.string().min(1),
    modes: z.array(z.literal('handoff')).min(1),
    /** a signed release (DESIGN.md §13): the manifest's format version and the sha256 of every
     * other file of the release, by its path in the release; release.json.sig signs this file */
    format: z.literal(1).optional(),
    files: z.record(z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 in hex')).optional(),
  })
  .strict();

export type HitlessDpManifest = z.infer<typeof HitlessDpManifest>;
export type OvsDpdkManifest = z.infer<typeof OvsDpdkManifest>;

/** release.json. A manifest without a kind is hitless-dp's (written before kinds existed). */
export const ReleaseManifest = z.preprocess(
  (v) => (v !== null && typeof v === 'object' && !Array.isArray(v) && !('kind' in v) ? { ...v, kind: 'hitless-dp' } : v),
  z.discriminatedUnion('kind', [HitlessDpManifest, OvsDpdkManifest]),
);
export type ReleaseManifest = z.infer<typeof ReleaseManifest>;

export const VmEntry = z
  .object({
    name: Name,
    mac: Mac,
    /** the frontend's own vhost-user socket, when the frontend is the server (QEMU server=on, as
     * OpenStack lays it out): the keeper connects to it, and again whenever it is lost */
    frontend_socket: absPath.optional(),
  })
  .strict();
export type VmEntry = z.infer<typeof VmEntry>;

/** <root>/etc/agent.json: who the host is and what it serves. */
export const AgentConfig = z
  .object({
    host: Name,
    vms: z.array(VmEntry).max(64),
    /** uplink interfaces; consecutive generations alternate between them */
    uplinks: z.array(z.string().min(1).max(15)).max(2).default([]),
    lcore: int.min(0).max(127).default(1),
    mem_mb: int.min(64).max(65536).default(256),
    /** after a generation dies, start a replacement of its release (a standby again) on its own */
    restore_standby: z.boolean().default(true),
    /** a lab probe's control socket: its traffic witnesses every switch's measurement */
    probe_ctl: absPath.optional(),
    /** the keys releases must be signed with (allowed-signers format); every release is verified
     * against them before a generation starts from it (agent/src/host/release.ts) */
    release_signers: absPath.default('/etc/hitless/release-signers'),
    /** start generations from releases without a signature too (a lab or a developer's host,
     * whose releases come from build trees); a signed release is verified all the same */
    unsigned_releases: z.boolean().default(false),
  })
  .strict();
export type AgentConfig = z.infer<typeof AgentConfig>;

export const FleetHost = z.object({
  name: Name,
  address: z.string().ip({ version: 'v4' }),
  root: absPath,
  /** the agent's command on the host (started over SSH with --stdio) */
  agent: absPath,
  /** hosts sharing one filesystem (the lab): the host package is unpacked here (the agent
   * command runs the agent from it) instead of installed with dpkg */
  package_dir: absPath.optional(),
  netns: z.string().min(1),
  vms: z.array(VmEntry),
});
export type FleetHost = z.infer<typeof FleetHost>;

/** A fleet file: everything needed to reach every host over SSH with pinned host keys. */
export const Fleet = z.object({
  dir: absPath,
  prefix: z.string().min(1),
  bridge: z.string().min(1),
  ssh_config: absPath,
  known_hosts: absPath,
  identity: absPath,
  hosts: z.array(FleetHost).min(1),
});
export type Fleet = z.infer<typeof Fleet>;
