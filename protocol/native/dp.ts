// hitless-dp's control commands, each defined once: name, argument schema, result schema.
// The C side registers the same names beside each feature (list-commands shows them); an
// integration test checks that the two lists agree.
import { z } from 'zod';
import { Mac, Name as VmName } from '../names.js';
import { request } from '../rpc.js';
import { ctl } from './ctl.js';

const Empty = z.object({}).strict();

/** A loaded forwarding stage (native/src/fwd/hitless_fwd.h): its ABI and state layout. */
export const Stage = z.object({
  name: z.string(),
  version: z.string(),
  abi: z.number().int(),
  layout: z.number().int(),
  path: z.string(),
});
export type Stage = z.infer<typeof Stage>;

export const GenInfo = z.object({
  gen_id: z.string(),
  version: z.string(),
  dpdk: z.string(),
  pid: z.number().int(),
  run_dir: z.string(),
  uptime_ms: z.number().int(),
  fwd: Stage,
  uplink: z.string().nullable().optional(),
  peer: z.string().nullable().optional(),
  vms: z.number().int(),
  max_vms: z.number().int(),
  fdb_entries: z.number().int(),
  tsc_hz: z.number().int(),
});

export const VmStats = z.object({
  connected: z.boolean(),
  rx_pkts: z.number().int(),
  rx_bytes: z.number().int(),
  tx_pkts: z.number().int(),
  tx_bytes: z.number().int(),
  tx_retries: z.number().int(),
  drops: z.object({
    ring_full: z.number().int(),
    no_dest: z.number().int(),
    not_ready: z.number().int(),
    stalled: z.number().int(),
  }),
  last_rx_ns: z.number().int(),
  last_tx_ns: z.number().int(),
  // first frame each way since the VM connected; an older release does not report them, which
  // reads as "not yet" (0): a mixed-release host must still be measurable
  first_rx_ns: z.number().int().default(0),
  first_tx_ns: z.number().int().default(0),
  pending: z.number().int(),
  /** arrivals whose direct frames waited for the frames still going round the peer link */
  fences: z.number().int().default(0),
  /** of those, released by the bound (DP_FENCE_US) rather than by their marker */
  fence_timeouts: z.number().int().default(0),
  /** its guest memory mapped ahead of a switch (the latest memory table's): pages the guest
   * had touched, mapped in ms; null before any table (or from an older release) */
  prefault: z.object({ done: z.boolean(), pages: z.number().int(), ms: z.number(), error: z.string().nullable() }).nullable().default(null),
});
export type VmStats = z.infer<typeof VmStats>;

/** An external port: the uplink, or the peer link to the host's other generation. */
export const ExtPort = z.object({
  spec: z.string(),
  link_up: z.boolean(),
  rx_pkts: z.number().int(),
  rx_bytes: z.number().int(),
  tx_pkts: z.number().int(),
  tx_bytes: z.number().int(),
  drop_tx: z.number().int(),
  drop_no_dest: z.number().int(),
  announces: z.number().int(),
  /** frames the port's socket caught before it was bound to its interface, discarded at start */
  stale: z.number().int().default(0),
  /** the peer link: the keeper found the generation at its other end dead (nothing goes in) */
  fenced: z.boolean().default(false),
  /** the peer link: its shared buffers mapped ahead once it came up (0: not yet, or the uplink) */
  mapped_ahead_bytes: z.number().int().default(0),
});

export const Stats = z.object({
  t_ns: z.number().int(),
  vms: z.record(VmStats),
  uplink: ExtPort.optional(),
  peer: ExtPort.optional(),
  loop: z.object({
    busy_cycles: z.number().int(),
    busy_pkts: z.number().int(),
    iterations: z.number().int(),
    busy_iterations: z.number().int(),
    idle_sleeps: z.number().int(),
    flood_pkts: z.number().int(),
    /** times the loop did not come round for threshold_us or more: no ring polled meanwhile;
     * `long`: the last ones of 10 ms or more, placed, with the CPU time the loop got in them
     * (ran_us near dur_us: an iteration ran long; near 0: the host gave it no CPU) */
    stalls: z.object({
      count: z.number().int(),
      total_us: z.number().int(),
      max_us: z.number().int(),
      max_at_ns: z.number().int(),
      threshold_us: z.number().int(),
      long: z.array(z.object({ start_ns: z.number().int(), dur_us: z.number().int(), ran_us: z.number().int() })),
    }),
  }),
});
export type Stats = z.infer<typeof Stats>;

/** What lib/swap and lib/rollback did; window_ns: how long the loop forwarded nothing. */
export const SwapResult = z.object({
  from: Stage,
  to: Stage,
  kind: z.enum(['swap', 'rollback']),
  /** the stage was opened by lib/load beforehand: the swap only switched */
  preloaded: z.boolean(),
  migrated: z.number().int(),
  /** which stage converted the FDB's words ("to": the incoming one); null: same layout */
  converted_by: z.enum(['from', 'to']).nullable(),
  asked_ns: z.number().int(),
  at_ns: z.number().int(),
  wait_ns: z.number().int(),
  window_ns: z.number().int(),
});
export type SwapResult = z.infer<typeof SwapResult>;

/** age_s: seconds since a learned address was last seen, when the stage's layout keeps it. */
export const FdbEntry = z
  .object({ mac: Mac, kind: z.enum(['vm', 'learned']), port: z.string(), age_s: z.number().int().min(0).optional() })
  .strict();
export type FdbEntry = z.infer<typeof FdbEntry>;

export const dp = {
  genInfo: request('gen/info', Empty, GenInfo),
  vmAdd: request(
    'vm/add',
    z.object({ vm: VmName, mac: Mac, socket: z.string().optional(), client: z.boolean().optional() }).strict(),
    z.object({ vm: z.string(), socket: z.string(), mode: z.enum(['server', 'client']), port: z.number().int() }),
  ),
  vmDel: request('vm/del', z.object({ vm: VmName }).strict(), z.object({})),
  vmList: request(
    'vm/list',
    Empty,
    z.object({
      vms: z.array(
        z.object({
          vm: z.string(),
          mac: Mac,
          socket: z.string(),
          mode: z.enum(['server', 'client']),
          connected: z.boolean(),
          port: z.number().int(),
          connects: z.number().int(),
          connected_ns: z.number().int(),
        }),
      ),
    }),
  ),
  vmAnnounce: request('vm/announce', z.object({ vm: VmName }).strict(), z.object({ vm: z.string(), sent: z.string() })),
  statsShow: request('stats/show', z.object({ vm: VmName.optional() }).strict(), Stats),
  fdbExport: request('fdb/export', Empty, z.object({ gen_id: z.string(), entries: z.array(FdbEntry) })),
  fdbImport: request(
    'fdb/import',
    z.object({ entries: z.array(FdbEntry) }).strict(),
    z.object({ imported: z.number().int(), absent_vms: z.array(z.string()), fdb_entries: z.number().int() }),
  ),
  peerAttach: request('peer/attach', z.object({ socket: z.string().min(1), server: z.boolean() }).strict(), ExtPort),
  peerDetach: request('peer/detach', Empty, z.object({})),
  debugStall: request(
    'debug/stall',
    z.object({ vm: VmName, ms: z.number().int().min(0).max(60000) }).strict(),
    z.object({ vm: z.string(), start_ns: z.number().int(), until_ns: z.number().int() }),
  ),
  libInfo: request(
    'lib/info',
    Empty,
    z.object({ stage: Stage, previous: Stage.nullable(), staged: Stage.nullable(), swaps: z.number().int(), abi: z.number().int() }),
  ),
  libSwap: request('lib/swap', z.object({ path: z.string().min(1).max(255) }).strict(), SwapResult),
  libRollback: request('lib/rollback', Empty, SwapResult),
  libLoad: request(
    'lib/load',
    z.object({ path: z.string().min(1).max(255) }).strict(),
    z.object({ staged: Stage, converted_by: z.enum(['from', 'to']).nullable(), fdb_entries: z.number().int() }),
  ),
  libUnload: request('lib/unload', Empty, z.object({ unloaded: Stage })),
  libCheck: request(
    'lib/check',
    z.object({ path: z.string().min(1).max(255) }).strict(),
    z.object({ from: Stage, to: Stage, converted_by: z.enum(['from', 'to']).nullable(), fdb_entries: z.number().int() }),
  ),
  listCommands: ctl.listCommands,
} as const;

/** Events a generation emits to subscribers. */
export const DpEvent = z.discriminatedUnion('event', [
  z.object({ event: z.literal('vm/connected'), data: z.object({ vm: z.string(), t_ns: z.number(), vid: z.number() }) }),
  z.object({
    event: z.literal('vm/disconnected'),
    data: z.object({ vm: z.string(), t_ns: z.number(), drain_ns: z.number(), drained: z.boolean(), dropped: z.number() }),
  }),
  z.object({ event: z.literal('vm/removed'), data: z.object({ vm: z.string() }) }),
]);
export type DpEvent = z.infer<typeof DpEvent>;
