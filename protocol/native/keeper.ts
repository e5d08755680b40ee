// hitless-keeper's control commands and events, each defined once (native/src/keeper registers
// the same names; a test checks the two lists agree).
import { z } from 'zod';
import { Mac, Name as VmName } from '../names.js';
import { request } from '../rpc.js';
import { ctl } from './ctl.js';

const int = z.number().int();
const GenName = VmName;

export const GenInfo = z.object({
  gen: z.string(),
  run_dir: z.string(),
  pid: int,
  dead: z.boolean(),
  heartbeat: z.boolean(),
  /** how the keeper sees its death: its packet loop's thread exiting (woken by the kernel),
   * its heartbeat stopping (polled), or only its sockets closing (stock OVS-DPDK) */
  death_watch: z.enum(['loop-exit', 'heartbeat', 'sockets']).optional(),
  /** its packet loop's CPU (null: not known), and how many other generations serve VMs from
   * that CPU: while some do, their loops take turns on it in short slices */
  loop_cpu: int.nullable().optional(),
  co_serving: int.optional(),
  standby: z.boolean(),
  serving: int,
  /** a listen-mode (OVS-DPDK) generation's pace port (keeper pace.c): null for hitless-dp */
  pace: z.object({ state: z.enum(['waiting', 'connecting', 'ready']), flips: int }).nullable().optional(),
});

export const Ring = z.object({
  index: int,
  num: int,
  base: int,
  enabled: z.boolean(),
  started: z.boolean(),
  stopped: z.boolean(),
  kick: z.boolean(),
  call: z.boolean(),
  used_idx: int.nullable(),
});

export const Session = z.object({
  vm: z.string(),
  socket: z.string(),
  mode: z.enum(['server', 'client']),
  connected: z.boolean(),
  serving: z.string().nullable().optional(),
  home: z.string().nullable().optional(),
  connects: int,
  disconnects: int,
  handoffs: int,
  failovers: int,
  refused: int,
  /** RARPs a listen-mode generation was asked to send for the VM after a move */
  announces: int.optional(),
  last_anomaly: z.string(),
  preloaded: z.array(z.string()),
  movable: z.boolean(),
  not_movable_because: z.string().optional(),
  state: z
    .object({
      features: int,
      protocol_features: int,
      packed: z.boolean(),
      status: int,
      regions: int,
      mtu: int,
      rings: z.array(Ring),
      fds_held: int,
      epoch: int,
      dirty_logging: z.boolean(),
    })
    .optional(),
});
export type Session = z.infer<typeof Session>;

export const Timing = z.object({
  request_ns: int,
  quiesce_ns: int,
  bases_ns: int,
  replayed_ns: int,
  resumed_ns: int,
  window_ns: int,
});
export type Timing = z.infer<typeof Timing>;

export const HandoffResult = z.object({
  vm: z.string(),
  from: z.string(),
  to: z.string(),
  timing: Timing,
  rings: z.array(z.object({ ring: int, base: int })),
  anomalies: z.array(z.string()),
});
export type HandoffResult = z.infer<typeof HandoffResult>;

export const keeper = {
  genAttach: request(
    'gen/attach',
    z
      .object({
        gen: GenName,
        run_dir: z.string(),
        /** connect: the generation listens at <run_dir>/vhost/<vm>.sock (hitless-dp); listen: the
         * keeper listens there and the generation's ports connect to it (OVS dpdkvhostuserclient) */
        backend: z.enum(['connect', 'listen']).optional(),
      })
      .strict(),
    GenInfo,
  ),
  genDetach: request('gen/detach', z.object({ gen: GenName }).strict(), z.object({})),
  genList: request('gen/list', z.object({}).strict(), z.object({ gens: z.array(GenInfo) })),
  failoverStandby: request('failover/standby', z.object({ gen: GenName }).strict(), GenInfo),
  vmAdd: request(
    'vm/add',
    z
      .object({
        vm: VmName,
        gen: GenName,
        socket: z.string().optional(),
        client: z.boolean().optional(),
        /** announced (RARP) by an OVS-DPDK generation the VM moves to (keeper handoff.c) */
        mac: Mac.optional(),
      })
      .strict(),
    Session,
  ),
  vmDel: request('vm/del', z.object({ vm: VmName }).strict(), z.object({})),
  sessionList: request('session/list', z.object({}).strict(), z.object({ sessions: z.array(Session) })),
  sessionShow: request('session/show', z.object({ vm: VmName }).strict(), Session),
  sessionPreload: request(
    'session/preload',
    z.object({ vm: VmName, gen: GenName }).strict(),
    // ready_in_ns: a handoff to gen sent sooner waits the rest of it (an OVS generation's
    // vhost event thread being woken up, keeper pace.c); 0 when it would not wait
    z.object({ vm: z.string(), gen: z.string(), took_ns: int, ready_in_ns: int }),
  ),
  handoffStart: request('handoff/start', z.object({ vm: VmName, gen: GenName }).strict(), HandoffResult),
  keeperInfo: request(
    'keeper/info',
    z.object({}).strict(),
    z.object({ version: z.string(), pid: int, state_format: int, fds: int, vms: int, sessions: int }),
  ),
  /** hand every session to a new keeper binary (native/src/keeper/upgrade.c): on success this
   * connection closes and the new keeper (pid) serves the same control socket */
  keeperUpgrade: request(
    'keeper/upgrade',
    z.object({ binary: z.string().min(1) }).strict(),
    z.object({ pid: int, old_pid: int, version: z.string(), pause_us: int, vms: int, sessions: int, fds: int, state_bytes: int }),
  ),
  debugHandoffPause: request('debug/handoff-pause', z.object({ ms: int.min(0).max(10000) }).strict(), z.object({ ms: int })),
  listCommands: ctl.listCommands,
} as const;

export const KeeperEvent = z.discriminatedUnion('event', [
  z.object({ event: z.literal('handoff/done'), data: HandoffResult }),
  z.object({
    event: z.literal('failover/done'),
    data: z.object({
      vm: z.string(),
      from: z.string().nullable().optional(),
      to: z.string(),
      cause: z.string(),
      timing: Timing,
      rings: z.array(z.object({ ring: int, base: int })),
    }),
  }),
  z.object({ event: z.literal('failover/failed'), data: z.object({ vm: z.string(), cause: z.string(), code: z.string(), message: z.string() }) }),
  z.object({ event: z.literal('gen/dead'), data: z.object({ gen: z.string(), cause: z.string(), moved: int, failed: int, /** generations whose peer link to it was fenced */ fenced: int.default(0), /** the frames its death cost: those it had taken and not let out, and those in its peer link that no side took out (lost_in_link, also given alone); null: it had no heartbeat page */ lost_inside: int.nullable().default(null), lost_in_link: int.nullable().default(null), t_ns: int, done_ns: int }) }),
  z.object({ event: z.literal('session/connected'), data: z.object({ vm: z.string(), gen: z.string(), t_ns: int }) }),
  z.object({ event: z.literal('session/disconnected'), data: z.object({ vm: z.string(), why: z.string(), t_ns: int }) }),
  z.object({ event: z.literal('session/anomaly'), data: z.object({ vm: z.string(), what: z.string(), t_ns: int }) }),
]);
export type KeeperEvent = z.infer<typeof KeeperEvent>;
