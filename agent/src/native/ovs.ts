// An OVS-DPDK instance run privately (DESIGN §12): its own ovsdb-server and ovs-vswitchd-dpdk
// (Debian's openvswitch-switch-dpdk: OVS 3.1 on DPDK 22.11, unmodified) in a run directory of
// its own, with its own DB, pidfiles, logs, DPDK file prefix and pinned PMD core, a netdev
// bridge and `dpdkvhostuserclient` ports. As a datapath generation behind the keeper, each VM
// port's vhost-server-path is the keeper's socket for that VM and generation, and the run dir
// holds dp.pid (ovs-vswitchd's pid) as a hitless-dp generation's does. The benchmarks run it as
// a peer too. OVS 3.1 always passes DPDK --in-memory, which DPDK refuses with --no-huge, so
// 2 MB hugepages are reserved in a private hugetlbfs mount and given back when it stops — also
// on SIGINT/SIGTERM, and a later start clears what a killed run left.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { hold } from '../../../protocol/native/hold.js';
import { alive, readPid } from '../host/supervisor.js';
import { CtlClient } from './ctlClient.js';
import { OpenFlow, type FlowMod } from './openflow.js';
import { Unixctl } from './unixctl.js';

const VSWITCHD = '/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk';
const SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';
const NR = '/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages';
const SURPLUS = '/sys/kernel/mm/hugepages/hugepages-2048kB/surplus_hugepages';
const COMPACT = '/proc/sys/vm/compact_memory';

/**
 * The persistent pool. nr_hugepages reads back every page, surplus ones too (pages still in use
 * by a process on its way out when the pool was shrunk below them: freed when it lets go), but
 * a write sets the persistent pool alone. Counting the surplus would make a reservation that
 * comes meanwhile turn those pages persistent, left in the pool for good once freed.
 */
function persistentPages(): number {
  return Number(readFileSync(NR, 'utf8').trim()) - Number(readFileSync(SURPLUS, 'utf8').trim());
}
const STATE_DIR = '/var/tmp/hitless-bench-huge';
/** the peer link's OpenFlow port number in every generation */
export const PEER_OFPORT = 100;
/** A bridge's OpenFlow state as another generation imports it: meters (add-meter specs),
 * groups and flows (ovs-ofctl's own text, sorted). */
export interface OpenFlowState {
  meters: string[];
  groups: string;
  flows: string;
}

/**
 * ovs-ofctl dump-meters' reply as add-meter specs, sorted. Each meter is a block:
 *   meter=1 kbps burst bands=
 *   type=drop rate=1000 burst_size=100
 * which add-meter takes as meter=1,kbps,burst,band=type=drop,rate=1000,burst_size=100.
 */
export function meterSpecs(dump: string): string[] {
  const specs: string[] = [];
  let cur: string[] | null = null;
  for (const raw of dump.split('\n')) {
    const l = raw.trim();
    if (l.startsWith('meter=')) {
      if (cur) specs.push(cur.join(','));
      cur = l.split(/\s+/).filter((t) => t !== 'bands=');
    } else if (l.startsWith('type=') && cur) {
      cur.push(`band=${l.split(/\s+/).join(',')}`);
    }
  }
  if (cur) specs.push(cur.join(','));
  return specs.sort();
}

/** A dpdkvhostuserclient port as the DB holds it. */
export interface VhostPort {
  name: string;
  /** the Interface row's _uuid: a port deleted and plugged again (even alike) is another row */
  row: string;
  /** null: OVS has not numbered it (yet), or refused it (error says why) */
  ofport: number | null;
  /** options:vhost-server-path */
  path: string | null;
  /** external_ids:attached-mac */
  mac: string | null;
  /** the Interface's error column: why OVS could not set the port up */
  error: string | null;
  /** the Interface's settings, kept when the port is pointed elsewhere (Ovs.repoint) */
  options: Record<string, string>;
  external_ids: Record<string, string>;
  other_config: Record<string, string>;
  mtu_request: number | null;
  /** its Port row's settings (a VLAN tag a Neutron agent set, the cloud's ids) */
  port: PortSettings;
}

export interface PortSettings {
  tag: number | null;
  trunks: number[];
  vlan_mode: string | null;
  external_ids: Record<string, string>;
  other_config: Record<string, string>;
}

/** `ovs-vsctl --format=json --columns=<VHOST_COLUMNS> find Interface ...` as VhostPorts. OVSDB's JSON: a map is ["map", [[k, v], ...]], an empty optional ["set", []]. */
export function parseVhostPorts(json: string, portsJson?: string): VhostPort[] {
  const table = (j: string) => {
    const t = JSON.parse(j) as { headings: string[]; data: unknown[][] };
    return { rows: t.data, col: (row: unknown[], name: string) => row[t.headings.indexOf(name)] };
  };
  const map = (v: unknown): Map<string, string> => new Map(Array.isArray(v) && v[0] === 'map' ? (v[1] as [string, string][]) : []);
  const scalar = <T>(v: unknown, kind: string): T | null => (typeof v === kind ? (v as T) : null);
  const settings = new Map<string, PortSettings>();
  if (portsJson) {
    const pt = table(portsJson);
    for (const row of pt.rows) {
      const trunks = pt.col(row, 'trunks');
      settings.set(String(pt.col(row, 'name')), {
        tag: scalar<number>(pt.col(row, 'tag'), 'number'),
        // a set of one is printed as its element
        trunks: typeof trunks === 'number' ? [trunks] : Array.isArray(trunks) && trunks[0] === 'set' ? (trunks[1] as number[]) : [],
        vlan_mode: scalar<string>(pt.col(row, 'vlan_mode'), 'string'),
        external_ids: Object.fromEntries(map(pt.col(row, 'external_ids'))),
        other_config: Object.fromEntries(map(pt.col(row, 'other_config'))),
      });
    }
  }
  const t = table(json);
  const col = t.col;
  return t.rows.map((row) => {
    const ofport = scalar<number>(col(row, 'ofport'), 'number');
    const options = map(col(row, 'options'));
    const ids = map(col(row, 'external_ids'));
    const id = col(row, '_uuid');
    return {
      name: String(col(row, 'name')),
      row: Array.isArray(id) && id[0] === 'uuid' ? String(id[1]) : '',
      ofport: ofport !== null && ofport > 0 ? ofport : null,
      path: options.get('vhost-server-path') ?? null,
      mac: ids.get('attached-mac') ?? null,
      error: scalar<string>(col(row, 'error'), 'string'),
      options: Object.fromEntries(options),
      external_ids: Object.fromEntries(ids),
      other_config: Object.fromEntries(map(col(row, 'other_config'))),
      mtu_request: scalar<number>(col(row, 'mtu_request'), 'number'),
      port: settings.get(String(col(row, 'name'))) ?? { tag: null, trunks: [], vlan_mode: null, external_ids: {}, other_config: {} },
    };
  });
}

/** The Interface and Port columns parseVhostPorts reads. */
export const VHOST_COLUMNS = '_uuid,name,ofport,options,external_ids,other_config,mtu_request,error';
export const PORT_COLUMNS = 'name,tag,trunks,vlan_mode,external_ids,other_config';

/** A dump's lines that say something (trimmed, not its header), sorted: two dumps compare. */
function lines(dump: string, head = '\0'): string[] {
  return dump.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith(head)).sort();
}

/** The keeper's pace port's socket in a generation's vhost dir (native/src/keeper/pace.c). */
export const PACE_SOCKET = '.pace.sock';
/** the uplink's OpenFlow port number in every generation */
export const UPLINK_OFPORT = 200;
/** The hold port (addHold): frames of a VM whose rings are between two generations. */
export const HOLD_OFPORT = 300;
const HOLD_RING_FRAMES = 4096;
/** The cookie of the flows Hitless adds around a switch (steer): never carried to another
 * generation, never compared with the controller's. */
export const SWITCH_COOKIE = '0x486c64';
const switchFlow = (line: string) => line.includes(`cookie=${SWITCH_COOKIE}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function ovsAvailable(vswitchd = VSWITCHD): string | null {
  if (!existsSync(vswitchd)) return `${vswitchd} is missing${vswitchd === VSWITCHD ? ': apt-get install openvswitch-switch-dpdk' : ''}`;
  if (!existsSync(NR)) return `${NR} is missing: this kernel has no 2 MB hugepages`;
  return null;
}



/**
 * 2 MB hugepages for one benchmark process: reserved on top of what the system had, mounted
 * privately, given back (and unmounted) by release(), which SIGINT/SIGTERM also run. A record
 * under /var/tmp lets the next run undo what a killed one left (releaseStale).
 */
/** A synchronous wait that spawns nothing (a signal to our group must not break cleanup). */
const pause = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

export class Hugepages {
  readonly mount: string;
  private readonly record: string;
  private released = false;
  /** every reservation of this process, released together on SIGINT/SIGTERM */
  private static readonly live = new Set<Hugepages>();
  private static onSignal(): void {
    Hugepages.releaseAll();
    process.exit(130);
  }

  /**
   * recordIn: where the reservation's record is kept. By default under STATE_DIR and owned by
   * this process (given back on its SIGINT/SIGTERM, and by releaseStale after it was killed);
   * a generation that outlives the agent which started it keeps its record in its own run dir
   * and is given back when it is stopped.
   */
  constructor(
    readonly dir: string,
    readonly mb: number,
    private readonly pids: () => (number | null)[] = () => [],
    recordIn?: string,
  ) {
    this.mount = join(dir, 'huge');
    this.ownedByProcess = recordIn === undefined;
    this.record = recordIn ?? join(STATE_DIR, `${Buffer.from(dir).toString('hex').slice(-40)}.json`);
  }

  private readonly ownedByProcess: boolean;

  reserve(): void {
    mkdirSync(this.mount, { recursive: true });
    mkdirSync(dirname(this.record), { recursive: true });
    const before = persistentPages();
    const pages = Math.ceil(this.mb / 2) + 16;
    writeFileSync(this.record, JSON.stringify({ dir: this.dir, mount: this.mount, pages }));
    if (this.ownedByProcess) {
      if (Hugepages.live.size === 0) {
        process.on('SIGINT', Hugepages.onSignal);
        process.on('SIGTERM', Hugepages.onSignal);
      }
      Hugepages.live.add(this);
    }
    writeFileSync(NR, String(before + pages));
    let got = persistentPages();
    if (got < before + pages && existsSync(COMPACT)) {
      // free memory cut into pieces smaller than 2 MB (a long-running host's page cache): the
      // kernel puts it together again, then the rest is asked for once more
      writeFileSync(COMPACT, '1');
      writeFileSync(NR, String(before + pages));
      got = persistentPages();
    }
    if (got < before + pages) {
      // give back what was had, not more
      writeFileSync(this.record, JSON.stringify({ dir: this.dir, mount: this.mount, pages: Math.max(0, got - before) }));
      this.release();
      throw new Error(`only ${got - before} of ${pages} 2 MB hugepages could be reserved (memory too fragmented?)`);
    }
    execFileSync('mount', ['-t', 'hugetlbfs', '-o', 'pagesize=2M', 'none', this.mount]);
  }

  private static undo(rec: { dir: string; mount: string; pages: number }, pids: (number | null)[]): void {
    for (const p of pids) if (alive(p)) kill(p!, 'SIGKILL');
    // pages a dying process still maps cannot be given back: wait for it to be gone
    for (let i = 0; i < 60 && pids.some(alive); i++) pause(50);
    for (let i = 0; i < 20; i++) {
      try {
        execFileSync('umount', [rec.mount], { stdio: 'ignore' });
        break;
      } catch {
        if (!execFileSync('mount', { encoding: 'utf8' }).includes(` ${rec.mount} `)) break; // not mounted
        pause(100);
      }
    }
    // pages a process on its way out still maps become surplus, and are freed when it lets go
    let left = rec.pages;
    for (let i = 0; i < 50 && left > 0; i++) {
      const now = persistentPages();
      writeFileSync(NR, String(Math.max(0, now - left)));
      left -= now - persistentPages();
      if (left > 0) pause(100);
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    let rec: { dir: string; mount: string; pages: number } | null = null;
    try {
      rec = JSON.parse(readFileSync(this.record, 'utf8')) as { dir: string; mount: string; pages: number };
    } catch {
      /* nothing was reserved */
    }
    if (rec) Hugepages.undo(rec, this.pids());
    rmSync(this.record, { force: true });
    if (!Hugepages.live.delete(this)) return;
    if (Hugepages.live.size === 0) {
      process.off('SIGINT', Hugepages.onSignal);
      process.off('SIGTERM', Hugepages.onSignal);
    }
  }

  /** Release every reservation this process still holds (daemons first, then pages). */
  static releaseAll(): void {
    for (const h of [...Hugepages.live]) h.release();
  }

  /** Undo what killed runs left: their daemons (pid files in their dir), mounts, pages. */
  static releaseStale(): void {
    let names: string[] = [];
    try {
      names = readdirSync(STATE_DIR);
    } catch {
      return;
    }
    for (const n of names) {
      try {
        const rec = JSON.parse(readFileSync(join(STATE_DIR, n), 'utf8')) as { dir: string; mount: string; pages: number };
        Hugepages.undo(rec, ['vswitchd.pid', 'ovsdb.pid'].map((f) => readPid(join(rec.dir, f))));
        rmSync(rec.dir, { recursive: true, force: true });
      } catch {
        /* unreadable record */
      }
      rmSync(join(STATE_DIR, n), { force: true });
    }
  }
}

export interface OvsOptions {
  pmdCore: number;
  /** the core of the main thread (null: not pinned) */
  mainCore: number | null;
  memMb: number;
  /** DPDK --file-prefix: distinct per running instance */
  filePrefix?: string;
  /** the PMD sleeps up to this long when it finds no packets (OVS 3.1 pmd-maxsleep): an idle generation costs ~0 CPU */
  pmdMaxSleepUs?: number;
  /**
   * run ovs-vswitchd in this network namespace (made if missing, removed at stop). Two
   * instances of OVS's userspace datapath cannot share one: each makes kernel devices
   * named after the datapath (the `ovs-netdev` tap) and its bridges. Its vhost-user and
   * control sockets are files, reachable from any namespace.
   */
  netns?: string;
  /** the ovs-vswitchd binary (a release's own; Debian's DPDK build by default) */
  vswitchd?: string;
  /** hitless-hold, for the generation's hold port (addHold) */
  hold?: string;
  /** a generation that outlives the process starting it keeps its hugepage record in its
   * run dir (Hugepages): given back by stop, from any process */
  persistent?: boolean;
}

interface Control {
  of: OpenFlow;
  ctl: Unixctl;
}

interface KeptConnections {
  conn: Control | null;
  hold: CtlClient | null;
}

/** Each generation's kept connections, by its directory (Ovs.control). */
const keptConnections = new Map<string, KeptConnections>();

/** A flow mod as ovs-ofctl's add-flows file has it (withControl's fallback for steer). */
function modText(m: FlowMod): string {
  const match = [`cookie=0x${m.cookie.toString(16)}${m.command === 'delete' ? '/-1' : ''}`, ...(m.priority !== undefined && m.command === 'add' ? [`priority=${m.priority}`] : []), ...(m.inPort !== undefined ? [`in_port=${m.inPort}`] : []), ...(m.ethDst !== undefined ? [`dl_dst=${m.ethDst.toLowerCase()}`] : [])].join(',');
  return m.command === 'delete' ? `delete ${match}` : `add ${match},actions=output:${m.output}`;
}

export class Ovs {
  private readonly env: NodeJS.ProcessEnv;
  private readonly huge: Hugepages;

  /** The instance started in dir (its options as start wrote them to ovs.json). */
  static at(dir: string): Ovs {
    return new Ovs(dir, JSON.parse(readFileSync(join(dir, 'ovs.json'), 'utf8')) as OvsOptions);
  }

  constructor(
    readonly dir: string,
    private readonly opts: OvsOptions,
  ) {
    this.env = { ...process.env, OVS_RUNDIR: dir, OVS_LOGDIR: dir, OVS_DBDIR: dir };
    this.huge = new Hugepages(dir, opts.memMb, () => ['vswitchd.pid', 'ovsdb.pid'].map((f) => readPid(join(dir, f))), opts.persistent ? join(dir, 'hugepages.json') : undefined);
  }

  private run(cmd: string, args: string[]): Promise<string> {
    return new Promise((res, rej) =>
      execFile(cmd, args, { env: this.env, timeout: 30_000 }, (e, out, err) => (e ? rej(new Error(`${cmd} ${args.join(' ')}: ${err.trim() || e.message}`)) : res(out))),
    );
  }

  vsctl(...args: string[]): Promise<string> {
    return this.run('ovs-vsctl', [`--db=unix:${join(this.dir, 'db.sock')}`, '--timeout=20', ...args]);
  }

  ofctl(...args: string[]): Promise<string> {
    return this.run('ovs-ofctl', args);
  }

  /** Hugepages, ovsdb, then ovs-vswitchd with DPDK on the PMD core. flowRestoreWait: it
   * forwards nothing until flowsRestored() (its state is being carried in). */
  async start(o: { flowRestoreWait?: boolean } = {}): Promise<void> {
    const why = ovsAvailable(this.opts.vswitchd);
    if (why) throw new Error(why);
    mkdirSync(this.dir, { recursive: true });
    writeFileSync(join(this.dir, 'ovs.json'), JSON.stringify(this.opts));
    this.huge.reserve();
    await this.run('ovsdb-tool', ['create', join(this.dir, 'conf.db'), SCHEMA]);
    await this.run('ovsdb-server', [join(this.dir, 'conf.db'), `--remote=punix:${join(this.dir, 'db.sock')}`, `--pidfile=${join(this.dir, 'ovsdb.pid')}`, '--detach', `--log-file=${join(this.dir, 'ovsdb.log')}`]);
    await this.vsctl('--no-wait', 'init');
    await this.vsctl(
      '--no-wait', 'set', 'Open_vSwitch', '.',
      'other_config:dpdk-init=true',
      // the main thread (which reconfigures the PMDs when a vhost device comes or goes) pinned
      // only when asked: on a host whose other core a busy poller holds, a pinned main thread
      // waits there for seconds
      ...(this.opts.mainCore !== null ? [`other_config:dpdk-lcore-mask=${(1 << this.opts.mainCore).toString(16)}`] : []),
      `other_config:pmd-cpu-mask=${(1 << this.opts.pmdCore).toString(16)}`,
      `other_config:dpdk-socket-mem=${this.opts.memMb}`,
      `other_config:dpdk-extra=--huge-dir=${join(this.dir, 'huge')} --file-prefix=${this.opts.filePrefix ?? 'hl-ovs'} --no-pci --log-level=error`,
      `other_config:vhost-sock-dir=${this.dir}`,
      ...(this.opts.pmdMaxSleepUs !== undefined ? [`other_config:pmd-maxsleep=${this.opts.pmdMaxSleepUs}`] : []),
      ...(o.flowRestoreWait ? ['other_config:flow-restore-wait=true'] : []),
    );
    const ns = this.opts.netns;
    if (ns) {
      // a name left by a generation of an earlier host (a lab made again) is stale: a new one
      if (existsSync(`/run/netns/${ns}`)) {
        await this.run('ip', ['netns', 'del', ns]).catch(() => undefined);
        rmSync(`/run/netns/${ns}`, { force: true }); // a name whose mount is gone: a bare file
      }
      await this.run('ip', ['netns', 'add', ns]);
    }
    await this.startSwitch();
    await this.vsctl('add-br', 'br0', '--', 'set', 'bridge', 'br0', 'datapath_type=netdev', 'fail_mode=secure', 'protocols=OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15');
  }

  private async startSwitch(): Promise<void> {
    const ns = this.opts.netns;
    const bin = this.opts.vswitchd ?? VSWITCHD;
    await this.run(ns ? 'ip' : bin, [
      ...(ns ? ['netns', 'exec', ns, bin] : []),
      `unix:${join(this.dir, 'db.sock')}`, `--pidfile=${join(this.dir, 'vswitchd.pid')}`, `--unixctl=${this.ctl()}`, '--detach', `--log-file=${join(this.dir, 'vswitchd.log')}`]);
    // the keeper finds a generation's process by <run dir>/dp.pid
    writeFileSync(join(this.dir, 'dp.pid'), `${this.pid()}\n`);
  }

  /** ovs-vswitchd's pid (null when it is not running). */
  pid(): number | null {
    const p = readPid(join(this.dir, 'vswitchd.pid'));
    return alive(p) ? p : null;
  }

  /** A port that connects, as vhost-user client, to a server socket (the keeper's for the VM
   * and this generation, or a VM's own); ofport: the OpenFlow port number to ask for (equal
   * numbers in two generations let flows be copied verbatim). */
  async addVhostClient(name: string, socket: string, ofport?: number): Promise<void> {
    await this.vsctl(
      'add-port', 'br0', name, '--', 'set', 'Interface', name, 'type=dpdkvhostuserclient', `options:vhost-server-path=${socket}`,
      ...(ofport !== undefined ? [`ofport_request=${ofport}`] : []),
    );
  }

  /**
   * The keeper's pace port (native/src/keeper/pace.c): a vhost port connected to the keeper's
   * socket that carries no frames, on a bridge of its own (no flow, group or port number of br0
   * changes). Its ring enable, flipped by the keeper around a switch, keeps OVS's vhost event
   * thread awake, so a VM's ring enable is applied within a millisecond instead of up to 64.
   * Names start with '.', which no VM's can.
   */
  async addPace(socket: string): Promise<void> {
    await this.vsctl(
      'add-br', '.hlpace', '--', 'set', 'bridge', '.hlpace', 'datapath_type=netdev', 'fail_mode=secure',
      '--', 'add-port', '.hlpace', '.pace', '--', 'set', 'Interface', '.pace', 'type=dpdkvhostuserclient', `options:vhost-server-path=${socket}`,
    );
  }

  /**
   * Busy-poll (on) or sleep when idle as started (off). OVS 3.1's PMD looks at whether a queue
   * was enabled only every 1025 loops, and one that sleeps up to pmdMaxSleepUs between loops
   * takes up to half a second for that many: a generation about to take a VM busy-polls through
   * the switch, so the VM's transmit ring is polled within a millisecond of its enable.
   */
  async busyPoll(on: boolean): Promise<void> {
    await this.vsctl('set', 'Open_vSwitch', '.', `other_config:pmd-maxsleep=${on ? 0 : (this.opts.pmdMaxSleepUs ?? 0)}`);
  }

  /** The bridge's flows, as ovs-ofctl add-flows reads them back. */
  async dumpFlows(): Promise<string> {
    const flows = (await this.ofctl('dump-flows', '--no-stats', '--no-names', 'br0')).split('\n').filter((l) => l.trim() !== '' && !l.startsWith('NXST_FLOW'));
    return `${flows.join('\n')}\n`;
  }

  /** Replace every flow of the bridge with these, atomically (one OpenFlow bundle). */
  async replaceFlows(flows: string): Promise<void> {
    const file = join(this.dir, 'flows.in');
    writeFileSync(file, flows);
    await this.ofctl('-O', 'OpenFlow14', '--bundle', 'replace-flows', 'br0', file);
  }

  /**
   * The link to the host's other OVS generation, as OpenFlow port `ofport`: one end of a veth
   * pair whose other end is in the other generation's namespace, polled by DPDK's af_packet PMD.
   * (A memif link would skip the kernel, but OVS 3.1's memif port never comes up in the server
   * role here — as a client of hitless-dp's memif server it does: not yet understood.)
   */
  async addPeer(iface: string, ofport = PEER_OFPORT): Promise<void> {
    writeFileSync(join(this.dir, 'peer'), iface);
    await this.vsctl(
      'add-port', 'br0', 'peer', '--', 'set', 'Interface', 'peer', 'type=dpdk',
      `options:dpdk-devargs=net_af_packet_peer,iface=${iface},framecnt=${HOLD_RING_FRAMES}`,
      `ofport_request=${ofport}`,
    );
  }

  /**
   * The generation's uplink: the interface `iface` (in the namespace of the process calling)
   * moved into the generation's namespace, polled by DPDK's af_packet PMD as OpenFlow port
   * UPLINK_OFPORT. stopSync moves it back before the namespace goes (a veth end left in a
   * deleted namespace would be destroyed with it).
   */
  async addUplink(iface: string): Promise<void> {
    const ns = this.opts.netns;
    if (!ns) throw new Error('an uplink needs the generation in a namespace of its own');
    writeFileSync(join(this.dir, 'uplink'), iface);
    await this.run('ip', ['link', 'set', iface, 'netns', ns]);
    await this.run('ip', ['-n', ns, 'link', 'set', iface, 'up']);
    await this.vsctl(
      'add-port', 'br0', 'uplink', '--', 'set', 'Interface', 'uplink', 'type=dpdk',
      `options:dpdk-devargs=net_af_packet_uplink,iface=${iface}`,
      `ofport_request=${UPLINK_OFPORT}`,
    );
  }

  /** The uplink interface it was given, if any. */
  uplink(): string | null {
    try {
      return readFileSync(join(this.dir, 'uplink'), 'utf8').trim();
    } catch {
      return null;
    }
  }

  /**
   * The generation's hold port, HOLD_OFPORT: one end of a veth pair in its namespace, polled by
   * DPDK's af_packet PMD; hitless-hold holds the other end (native/src/hold). (A tap device
   * opened by OVS, DPDK's net_tap, would skip the kernel's backlog queue that a veth passes
   * frames through; but its PMD reads with a system call per queue per loop, and at 50 kpps the
   * PMD of this 2-core machine fell behind and lost 220 000 frames in a run.) Added with the
   * generation's other ports before its uplink (a port added later would reload the PMD of a
   * generation that serves VMs; an af_packet port opened while the uplink is in the namespace
   * would catch the uplink's frames before its bind). Frames that come back from it go nowhere
   * but where a switch sends them (steer).
   */
  async addHold(name: string): Promise<void> {
    const ns = this.opts.netns;
    if (!ns || !this.opts.hold) throw new Error('a hold port needs the generation in a namespace of its own and hitless-hold');
    const [port, held] = [`${name}a`, `${name}b`];
    await this.run('ip', ['-n', ns, 'link', 'add', port, 'type', 'veth', 'peer', 'name', held]);
    await this.quietLink(port);
    await this.quietLink(held);
    const log = openSync(join(this.dir, 'hold.log'), 'a');
    const child = spawn('ip', ['netns', 'exec', ns, this.opts.hold, '--iface', held, '--ctl', this.holdSocket(), '--pidfile', join(this.dir, 'hold.pid')], { detached: true, stdio: ['ignore', log, log] });
    closeSync(log);
    let exited: number | null = null;
    child.once('exit', (code) => (exited = code ?? -1));
    child.unref();
    for (let i = 0; ; i++) {
      if (exited !== null) throw new Error(`hitless-hold exited during start-up (code ${exited}); see ${join(this.dir, 'hold.log')}`);
      if (existsSync(this.holdSocket()) && (await CtlClient.connect(this.holdSocket(), 1000).then((c) => (c.close(), true)).catch(() => false))) break;
      if (i > 200) throw new Error(`hitless-hold: no control socket after 10 s; see ${join(this.dir, 'hold.log')}`);
      await sleep(50);
    }
    // a kernel ring of 4096 frames (DPDK's default is 512): the released backlog comes in at up
    // to 64 kpps (native/src/hold), and a PMD that stalls a few ms on a busy host would see the
    // kernel drop what its ring cannot take
    await this.vsctl('add-port', 'br0', 'hold', '--', 'set', 'Interface', 'hold', 'type=dpdk', `options:dpdk-devargs=net_af_packet_hold,iface=${port},framecnt=${HOLD_RING_FRAMES}`, `ofport_request=${HOLD_OFPORT}`);
  }

  private holdSocket(): string {
    return join(this.dir, 'hold.sock');
  }

  /** Whether this generation's hold port can hold: it has one (one started before hold ports
   * existed has not) and its hitless-hold runs (a dead one leaves its socket file behind). */
  hasHold(): boolean {
    return existsSync(this.holdSocket()) && alive(readPid(join(this.dir, 'hold.pid')));
  }

  /** hitless-hold: hold, or release (returns the frames it sent back). */
  async holdFrames(on: boolean): Promise<number> {
    const c = await this.holdControl();
    return on ? (await c.request(hold.holdStart, {}), 0) : (await c.request(hold.holdRelease, {})).released;
  }

  /**
   * Where this generation sends a VM's frames during its switch (DESIGN.md §12), as flows of
   * its own (SWITCH_COOKIE) above the controller's, from every port:
   *   'peer'  the VM is leaving: to the other generation, which holds or delivers them;
   *   'hold'  the VM is arriving: to the hold port until its rings run here; what comes back
   *           from the hold port goes to the VM's port;
   *   'port'  the VM has arrived: to its port;
   *   null    the switch is over: the controller's flows alone again.
   * Returns once the datapath forwards by them.
   */
  async steer(vm: { mac: string; ofport: number }, to: 'peer' | 'hold' | 'port' | null): Promise<void> {
    const out = to === null ? null : { peer: PEER_OFPORT, hold: HOLD_OFPORT, port: vm.ofport }[to];
    const cookie = BigInt(SWITCH_COOKIE);
    // what was there for the VM goes in the same bundle: the datapath never sees a mix
    const mods: FlowMod[] = [
      { command: 'delete', cookie, ethDst: vm.mac },
      ...(to === 'hold' ? [{ command: 'add', cookie, priority: 65001, inPort: HOLD_OFPORT, ethDst: vm.mac, output: vm.ofport } as const] : []),
      ...(out !== null ? [{ command: 'add', cookie, priority: 65000, ethDst: vm.mac, output: out } as const] : []),
    ];
    await this.withControl(
      (c) => c.of.bundle(mods),
      async () => {
        const file = join(this.dir, 'steer.in');
        writeFileSync(file, `${mods.map(modText).join('\n')}\n`);
        await this.ofctl('-O', 'OpenFlow14', '--bundle', 'add-flows', 'br0', file);
      },
    );
    // in force on return: the datapath's cached flows are dropped, so its next frames are
    // translated by the new ones (revalidator/wait waits for the next timed cycle, up to
    // max-revalidator: 500 ms, while the flow mod's own revalidation has often ended already)
    await this.withControl((c) => c.ctl.call('revalidator/purge'), () => this.appctl('revalidator/purge'));
  }

  /** Every flow steer added, gone (the generation serves its VMs alone now). */
  async unsteer(): Promise<void> {
    await this.ofctl('del-flows', 'br0', `cookie=${SWITCH_COOKIE}/-1`);
  }

  /** Whether OVS sees a port live (a vhost port: its device running here), as a fast-failover
   * group's bucket watching it does. */
  async live(port: string): Promise<boolean> {
    const p = await this.withControl(
      async (c) => (c.of.ports()).then((ps) => ps.find((d) => d.name === port)?.live),
      async () => /state:[^\n]*\bLIVE\b/.test(await this.ofctl('-O', 'OpenFlow13', 'dump-ports-desc', 'br0', port)),
    );
    if (p === undefined) throw new Error(`${port}: no such port in ${this.dir}`);
    return p;
  }

  /**
   * The connections the agent talks to this generation over (openflow.ts, unixctl.ts, and its
   * hitless-hold's control socket), made at the first call and kept, for this generation's
   * directory, by every Ovs of it until disconnect() or stopSync(): a switch's steps, and the
   * counters read every second, cost a round trip each, not a process or a connection each.
   */
  async control(): Promise<Control> {
    const k = this.kept();
    if (k.conn && !k.conn.of.closed && !k.conn.ctl.closed) return k.conn;
    k.conn?.of.close();
    k.conn?.ctl.close();
    k.conn = null;
    const of = (await OpenFlow.connect(join(this.dir, 'br0.mgmt'))).unref();
    const ctl = await Unixctl.connect(this.ctl()).catch((e: unknown) => {
      of.close();
      throw e;
    });
    k.conn = { of, ctl: ctl.unref() };
    return k.conn;
  }

  /**
   * One request over the kept connections; if they were closed meanwhile (ovs-vswitchd closes
   * a management connection that leaves its echo requests unanswered: an agent starved of CPU
   * for seconds), made again and the request sent once more, and if closed again, fallback
   * (the step as a process: ovs-ofctl, ovs-appctl): every request made this way is one that can
   * be repeated (a bundle that replaces the VM's flows whole, a purge, a read).
   */
  async withControl<R>(fn: (c: Control) => Promise<R>, fallback: () => Promise<R>): Promise<R> {
    let c: Control | null = null;
    try {
      c = await this.control();
      return await fn(c);
    } catch (e) {
      if (c && !c.of.closed && !c.ctl.closed) throw e;
    }
    try {
      c = await this.control();
      return await fn(c);
    } catch (e) {
      if (c && !c.of.closed && !c.ctl.closed) throw e;
      // closed again: this step the way it was done before there were kept connections
      process.stderr.write(`hitless-agent: ${this.dir}: ${(e as Error).message}; this step by ovs-ofctl/ovs-appctl\n`);
      return fallback();
    }
  }

  /** The connection to this generation's hitless-hold, kept as control()'s are (only the
   * generation a VM moves to talks to its hold port). */
  async holdControl(): Promise<CtlClient> {
    const k = this.kept();
    if (k.hold && !k.hold.isClosed()) return k.hold;
    k.hold?.close();
    k.hold = (await CtlClient.connect(this.holdSocket(), 5000)).unref();
    return k.hold;
  }

  private kept(): KeptConnections {
    let k = keptConnections.get(this.dir);
    if (!k) keptConnections.set(this.dir, (k = { conn: null, hold: null }));
    return k;
  }

  /** This generation's kept connections closed (a later call makes them again). */
  disconnect(): void {
    const k = keptConnections.get(this.dir);
    keptConnections.delete(this.dir);
    k?.conn?.of.close();
    k?.conn?.ctl.close();
    k?.hold?.close();
  }

  /**
   * Every frame `from` has sent this generation over the peer link so far has been read here
   * (and, in the same turn of the PMD loop, forwarded) or dropped by the kernel for want of
   * room in this end's ring (OVS counts those as the port's rx_dropped), or 100 ms have passed.
   * A switch waits for this between the target's holding the VM's frames and the source's
   * sending them to the target: frames the target sent before its hold, still on their way,
   * would otherwise reach the source after its steer and go back to the target's hold, behind
   * frames held after them. Returns whether they were all read.
   */
  async drained(from: Ovs): Promise<boolean> {
    // without the connections (withControl's fallback) the wait is skipped
    const none = async () => null;
    const sent = (await from.withControl((c) => c.of.portStats(PEER_OFPORT), none))?.tx;
    if (sent === undefined) return false;
    for (const until = Date.now() + 100; Date.now() < until; await sleep(0.5)) {
      const st = await this.withControl((c) => c.of.portStats(PEER_OFPORT), none);
      if (!st) return false;
      if (st.rx + st.rxDropped >= sent) return true;
    }
    return false;
  }

  /** The peer link's port gone (the generation beyond it is stopping), if there is one. */
  async delPeer(): Promise<void> {
    await this.vsctl('--if-exists', 'del-port', 'br0', 'peer');
  }

  /**
   * A peer link that costs the serving generation nothing later: a veth pair made in this
   * generation's namespace, one end its peer port now, the other parked here for the next
   * generation (adopt). Adding a port to a running ovs-vswitchd reloads its PMD threads, and
   * a VM whose rings go unpolled meanwhile loses frames; so the serving generation's ports never
   * change during an upgrade.
   */
  async peerPair(name: string): Promise<void> {
    const ns = this.opts.netns!;
    const [mine, parked] = [`${name}a`, `${name}b`];
    await this.run('ip', ['-n', ns, 'link', 'add', mine, 'type', 'veth', 'peer', 'name', parked]);
    await this.quietLink(mine);
    await this.quietLink(parked);
    writeFileSync(join(this.dir, 'parked'), parked);
    await this.addPeer(mine);
  }

  /** The other end of the peer link of the generation in `from`, taken from where it is parked
   * there and made this generation's peer port. False when none is parked. */
  async adoptPeer(from: Ovs): Promise<boolean> {
    const parked = from.parked();
    if (!parked) return false;
    await this.run('ip', ['-n', from.netns!, 'link', 'set', parked, 'netns', this.opts.netns!]);
    rmSync(join(from.dir, 'parked'), { force: true });
    await this.quietLink(parked);
    await this.addPeer(parked);
    return true;
  }

  /** The peer-link end waiting here for the next generation, if any. */
  parked(): string | null {
    try {
      return readFileSync(join(this.dir, 'parked'), 'utf8').trim();
    } catch {
      return null;
    }
  }

  /** The peer port's interface (for stopSync to hand back), if any. */
  private peerIface(): string | null {
    try {
      return readFileSync(join(this.dir, 'peer'), 'utf8').trim();
    } catch {
      return null;
    }
  }

  /** Up, and silent: only our frames cross a link (no IPv6 chatter). */
  private async quietLink(iface: string): Promise<void> {
    const ns = this.opts.netns!;
    await this.run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${iface}.disable_ipv6=1`]);
    await this.run('ip', ['-n', ns, 'link', 'set', iface, 'up']);
  }

  /** The carried state is in: forward from now on. */
  async flowsRestored(): Promise<void> {
    await this.vsctl('--if-exists', 'remove', 'Open_vSwitch', '.', 'other_config', 'flow-restore-wait');
  }

  /** The network namespace ovs-vswitchd runs in, if its own. */
  get netns(): string | undefined {
    return this.opts.netns;
  }

  /**
   * L2 forwarding for VMs that may be split across two generations joined by a peer link: per
   * VM a fast-failover group (its own port while that port is live — its vhost device running
   * here — else the peer link), and frames that came over the peer link go to the local port
   * only (never back). The same rules serve both generations, so they are copied verbatim.
   */
  async splitL2(vms: { port: number; mac: string }[], peer = PEER_OFPORT, uplink: number | null = null): Promise<void> {
    await this.ofctl('-O', 'OpenFlow13', 'del-flows', 'br0');
    await this.ofctl('-O', 'OpenFlow13', 'del-groups', 'br0');
    // any other destination leaves by the uplink (never back out of it: OVS drops output to in_port)
    if (uplink !== null) await this.ofctl('-O', 'OpenFlow13', 'add-flow', 'br0', `priority=1,actions=output:${uplink}`);
    for (const v of vms) {
      await this.ofctl('-O', 'OpenFlow13', 'add-group', 'br0', `group_id=${v.port},type=ff,bucket=watch_port:${v.port},output:${v.port},bucket=watch_port:${peer},output:${peer}`);
      await this.ofctl('-O', 'OpenFlow13', 'add-flow', 'br0', `priority=20,in_port=${peer},dl_dst=${v.mac},actions=output:${v.port}`);
      await this.ofctl('-O', 'OpenFlow13', 'add-flow', 'br0', `priority=10,dl_dst=${v.mac},actions=group:${v.port}`);
    }
  }

  /** The bridge's OpenFlow state (groups, then flows), for another generation to import; in a
   * stable order (OVS dumps groups in hash order), so two states compare. */
  async exportState(): Promise<OpenFlowState> {
    const text = (out: string, head: string) => `${lines(out, head).join('\n')}\n`;
    return {
      meters: meterSpecs(await this.ofctl('-O', 'OpenFlow13', 'dump-meters', 'br0')),
      groups: text(await this.ofctl('-O', 'OpenFlow13', 'dump-groups', 'br0'), 'OFPST_GROUP_DESC'),
      flows: text(await this.ofctl('-O', 'OpenFlow13', 'dump-flows', '--no-stats', '--no-names', 'br0'), 'OFPST_FLOW').split('\n').filter((l) => !switchFlow(l)).join('\n'),
    };
  }

  /**
   * Another generation's OpenFlow state, taken in: meters and groups first (flows refer to
   * them), each added when missing here and modified when it differs, then every flow replaced
   * in one bundle. On a fresh bridge that is a copy; on one already carrying the state (a VM
   * plugged mid-upgrade) only what changed moves, and flows that stay are not touched.
   */
  async importState(st: OpenFlowState): Promise<void> {
    const mine = await this.exportState();
    const byId = (specs: string[], key: string) => new Map(specs.map((x) => [new RegExp(`${key}=(\\d+)`).exec(x)?.[1] ?? x, x]));
    const myMeters = byId(mine.meters, 'meter');
    for (const [id, m] of byId(st.meters, 'meter')) {
      if (!myMeters.has(id)) await this.ofctl('-O', 'OpenFlow13', 'add-meter', 'br0', m);
      else if (myMeters.get(id) !== m) await this.ofctl('-O', 'OpenFlow13', 'mod-meter', 'br0', m);
    }
    const myGroups = byId(lines(mine.groups), 'group_id');
    const theirs = [...byId(lines(st.groups), 'group_id')];
    const added = theirs.filter(([id]) => !myGroups.has(id)).map(([, g]) => g);
    if (added.length > 0) {
      const file = join(this.dir, 'groups.in');
      writeFileSync(file, `${added.join('\n')}\n`);
      await this.ofctl('-O', 'OpenFlow13', 'add-groups', 'br0', file);
    }
    // (ovs-ofctl 3.1 modifies groups one at a time: it has no mod-groups)
    for (const [id, g] of theirs) if (myGroups.has(id) && myGroups.get(id) !== g) await this.ofctl('-O', 'OpenFlow13', 'mod-group', 'br0', g);
    // the flows of a switch under way here stay as they are
    const ours = lines(await this.ofctl('-O', 'OpenFlow13', 'dump-flows', '--no-stats', '--no-names', 'br0'), 'OFPST_FLOW').filter(switchFlow);
    await this.replaceFlows([...st.flows.split('\n').filter((l) => l.trim() !== ''), ...ours].map((l) => `${l}\n`).join(''));
  }

  /**
   * The bridge's VM ports as the DB holds them (the cloud's tooling adds them there: Nova/os-vif
   * writes name, type dpdkvhostuserclient, options:vhost-server-path and
   * external_ids:attached-mac); the keeper's pace port is not one.
   */
  async vhostPorts(): Promise<VhostPort[]> {
    // both tables in one run (one JSON table per line)
    const [out, ports] = (await this.vsctl('--format=json', '--', `--columns=${VHOST_COLUMNS}`, 'find', 'Interface', 'type=dpdkvhostuserclient', '--', `--columns=${PORT_COLUMNS}`, 'list', 'Port')).trim().split('\n');
    // by name: the DB's order is its hash order
    return parseVhostPorts(out!, ports).filter((p) => !p.name.startsWith('.')).sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  }

  /**
   * A VM's port like p, connecting to socket: same name, OpenFlow number, options,
   * external_ids (OVN binds a port by its iface-id), other_config and MTU, and its Port row's
   * VLAN tag, trunks, VLAN mode, external_ids and other_config. For the same VM's
   * port in another generation, and to point a port elsewhere (repoint).
   */
  async addVhostLike(p: VhostPort, socket: string): Promise<void> {
    const q = (v: string) => JSON.stringify(v);
    const col = (name: string, m: Record<string, string>) => Object.entries(m).map(([k, v]) => `${name}:${q(k)}=${q(v)}`);
    const port = [
      ...col('external_ids', p.port.external_ids),
      ...col('other_config', p.port.other_config),
      ...(p.port.tag !== null ? [`tag=${p.port.tag}`] : []),
      ...(p.port.trunks.length > 0 ? [`trunks=${p.port.trunks.join(',')}`] : []),
      ...(p.port.vlan_mode !== null ? [`vlan_mode=${p.port.vlan_mode}`] : []),
    ];
    await this.vsctl(
      'add-port', 'br0', p.name, '--', 'set', 'Interface', p.name, 'type=dpdkvhostuserclient',
      ...col('options', { ...p.options, 'vhost-server-path': socket }),
      ...col('external_ids', p.external_ids),
      ...col('other_config', p.other_config),
      ...(p.ofport !== null ? [`ofport_request=${p.ofport}`] : []),
      ...(p.mtu_request !== null ? [`mtu_request=${p.mtu_request}`] : []),
      ...(port.length > 0 ? ['--', 'set', 'Port', p.name, ...port] : []),
    );
  }

  /**
   * Point a VM's port at another socket. OVS 3.1 reads vhost-server-path only when it creates
   * the port (once its vhost client is registered, a new path is ignored), so the port is
   * deleted and added again like it was (addVhostLike). Its flows and groups stay (OVS keeps
   * flows that name a port that goes).
   */
  async repoint(p: VhostPort, socket: string): Promise<void> {
    await this.vsctl('--if-exists', 'del-port', 'br0', p.name);
    await this.addVhostLike(p, socket);
  }

  /** One flow per VM MAC to its port: the FDB lookup hitless-dp does, as OpenFlow. */
  async l2Flows(vms: { port: string; mac: string }[]): Promise<void> {
    await this.ofctl('del-flows', 'br0');
    for (const v of vms) await this.ofctl('add-flow', 'br0', `priority=10,dl_dst=${v.mac},actions=output:${v.port}`);
  }

  /** Frames each port received and sent (OVS's own counters). */
  async portStats(port: string): Promise<{ rx: number; tx: number; drops: number }> {
    // live from the datapath (the DB's statistics column is refreshed only every 5 s):
    //   port  1: rx pkts=N, bytes=N, drop=N, errs=N, ... tx pkts=N, bytes=N, drop=N, ...
    const out = await this.ofctl('dump-ports', 'br0', port);
    // ("?" for a vhost port whose device is not running: nothing counted yet)
    const m = /rx pkts=(\d+|\?), bytes=(?:\d+|\?), drop=(\d+|\?)[\s\S]*?tx pkts=(\d+|\?), bytes=(?:\d+|\?), drop=(\d+|\?)/.exec(out);
    if (!m) throw new Error(`ovs-ofctl dump-ports br0 ${port}: unexpected output: ${out.slice(0, 200)}`);
    const n = (x: string | undefined) => (x === undefined || x === '?' ? 0 : Number(x));
    return { rx: n(m[1]), tx: n(m[3]), drops: n(m[2]) + n(m[4]) };
  }

  /** The counters of these ports (those the bridge has), as portStats has them, in two requests
   * over the kept connection. */
  async portsStats(names: string[]): Promise<Map<string, { rx: number; tx: number; drops: number }>> {
    return this.withControl(
      async (c) => {
        const [descs, stats] = await Promise.all([c.of.ports(), c.of.allPortStats()]);
        const out = new Map<string, { rx: number; tx: number; drops: number }>();
        for (const d of descs) {
          const st = stats.get(d.no);
          if (st && names.includes(d.name)) out.set(d.name, { rx: Number(st.rx), tx: Number(st.tx), drops: Number(st.rxDropped + st.txDropped) });
        }
        return out;
      },
      async () => {
        const have = new Set((await this.vhostPorts()).map((p) => p.name));
        const out = new Map<string, { rx: number; tx: number; drops: number }>();
        for (const n of names.filter((x) => have.has(x))) out.set(n, await this.portStats(n));
        return out;
      },
    );
  }

  /** One unixctl command to ovs-vswitchd (ovs-appctl). */
  appctl(...args: string[]): Promise<string> {
    return this.run('ovs-appctl', ['-t', this.ctl(), ...args]);
  }

  /** ovs-vswitchd's unixctl socket (given to it by path: whatever the binary is named). */
  private ctl(): string {
    return join(this.dir, 'vswitchd.ctl');
  }

  /** The PMD's own cost: "avg processing cycles per packet" from dpif-netdev/pmd-stats-show. */
  async pmdCyclesPerPacket(): Promise<number | null> {
    const out = await this.appctl('dpif-netdev/pmd-stats-show').catch(() => '');
    const m = /avg processing cycles per packet:\s*([\d.]+)/.exec(out);
    return m ? Number(m[1]) : null;
  }

  /**
   * Restart ovs-vswitchd the way operators do it today (ovs-ctl's restart): flows saved,
   * flow-restore-wait set, the daemon stopped and started, the flows restored, the wait
   * cleared; the vhost client ports then reconnect to the VMs. Returns when the flows are back.
   */
  async restart(): Promise<{ stopped_ns: number; restored_ns: number }> {
    const flows = (await this.ofctl('dump-flows', '--no-stats', '--no-names', 'br0')).split('\n').filter((l) => l.trim() !== '');
    writeFileSync(join(this.dir, 'flows.txt'), `${flows.join('\n')}\n`);
    await this.vsctl('set', 'Open_vSwitch', '.', 'other_config:flow-restore-wait=true');
    const stopped_ns = Number(process.hrtime.bigint());
    const pid = readPid(join(this.dir, 'vswitchd.pid'));
    await this.appctl('exit');
    for (let i = 0; i < 400 && alive(pid); i++) await sleep(25);
    if (alive(pid)) kill(pid!, 'SIGKILL');
    for (let i = 0; i < 200 && alive(pid); i++) await sleep(25);
    await this.startSwitch();
    await this.ofctl('add-flows', 'br0', join(this.dir, 'flows.txt'));
    await this.flowsRestored();
    return { stopped_ns, restored_ns: Number(process.hrtime.bigint()) };
  }

  /** Stop both daemons, unmount, give the hugepages back, the uplink back to `uplinkTo` (a
   * namespace's name or a pid; by default the calling process's namespace), and its end of the
   * peer link to `peerTo` (the generation that stays: parked there for the next one); safe to
   * call twice. */
  stopSync(uplinkTo: string = String(process.pid), peerTo: Ovs | null = null): void {
    this.disconnect();
    for (const f of ['vswitchd.pid', 'ovsdb.pid', 'hold.pid']) {
      const p = readPid(join(this.dir, f));
      if (!alive(p)) continue;
      kill(p!, 'SIGTERM');
      for (let i = 0; i < 100 && alive(p); i++) pause(50);
      if (alive(p)) kill(p!, 'SIGKILL');
    }
    this.huge.release();
    if (this.opts.netns && existsSync(`/run/netns/${this.opts.netns}`)) {
      try {
        // the uplink back where it came from
        const up = this.uplink();
        if (up) execFileSync('ip', ['-n', this.opts.netns, 'link', 'set', up, 'netns', uplinkTo], { stdio: 'ignore' });
      } catch {
        /* not there (any more) */
      }
      const peer = this.peerIface();
      if (peer && peerTo?.netns && existsSync(`/run/netns/${peerTo.netns}`)) {
        try {
          execFileSync('ip', ['-n', this.opts.netns, 'link', 'set', peer, 'netns', peerTo.netns], { stdio: 'ignore' });
          execFileSync('ip', ['-n', peerTo.netns, 'link', 'set', peer, 'up'], { stdio: 'ignore' });
          writeFileSync(join(peerTo.dir, 'parked'), peer);
        } catch {
          /* its pair went with a namespace already deleted */
        }
      }
      try {
        execFileSync('ip', ['netns', 'del', this.opts.netns], { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
    }
  }
}

/**
 * A VM's switch between two OVS generations, X to Y. Stock OVS drops what it sends to a vhost
 * port whose rings it has stopped (X, from the keeper's GET_VRING_BASE on) or not yet started
 * (Y, until the keeper's handoff ends), and X goes on sending to the VM's port until its
 * fast-failover group sees the port down (5-35 ms here). So around the handoff:
 *   0. outside the VM's break: Y's PMD busy-polls (it sees the VM's rings enabled within a
 *      millisecond), the connections the steps use are opened (Ovs.control: one round trip per
 *      step, not a process), and steps.ready (the keeper pre-loads the VM on Y and Y's vhost
 *      event thread is awake: a handoff sent earlier would wait for it inside the break);
 *   1. Y's hold port holds (hitless-hold: nothing read, nothing lost) and Y sends the VM's
 *      frames to it; X has read every frame Y sent it before that (drained: such a frame would
 *      otherwise come back into Y's hold behind newer ones);
 *   2. X sends the VM's frames over the peer link to Y; each change in force before the next
 *      step (steer);
 *   3. the keeper's handoff: the VM's rings stop on X and start on Y;
 *   4. once Y's main thread has reconfigured the VM's port for the device now running there
 *      (OVS drops what it sends to the port until then: the port is live), the hold port
 *      releases: the held frames, oldest first, go into the VM's ring on Y; Y then sends the
 *      VM's frames to its port. A frame still on the hold port's path then (in the kernel's
 *      queue, in hitless-hold, in Y's hold-port ring) can be overtaken by one sent directly:
 *      reordered, not lost; no order of steps closes that window with stock OVS.
 * The switch's flows stay until the generation serves its VMs alone (unsteer, from
 * Datapath.alone: the other generation stopped or died). Taking them away earlier, once the
 * ports' states agree, lost frames here: the fast-failover groups' view of a port lags what
 * OpenFlow shows.
 * A handoff that fails leaves the VM on X: X delivers again and what Y held goes back to X.
 */
/** The steps of a held switch's break, in order (heldSwitch's mark). */
export const HELD_STEPS = ['begin', 'held', 'drained', 'steered', 'handed-off', 'live', 'released', 'direct'] as const;
export type HeldStep = (typeof HELD_STEPS)[number];

export async function heldSwitch<T>(
  x: Ovs,
  y: Ovs,
  vm: { name: string; mac: string },
  steps: { ready: () => Promise<void>; handoff: () => Promise<T>; /** told as each step of the break ends (benchmarks time them) */ mark?: (step: HeldStep) => void },
): Promise<T> {
  const mark = steps.mark ?? (() => undefined);
  const ofport = (await y.vhostPorts()).find((p) => p.name === vm.name)?.ofport;
  if (ofport === undefined || ofport === null) throw new Error(`${vm.name} has no port in ${y.dir}`);
  const v = { mac: vm.mac, ofport };
  await y.busyPoll(true);
  try {
    // connected before the break where they can be (a refused connection is not fatal: each
    // step falls back to a process, withControl)
    await x.control().catch(() => undefined);
    await y.control().catch(() => undefined);
    await y.holdControl();
    await steps.ready();
    let r: T;
    try {
      mark('begin');
      await y.holdFrames(true);
      await y.steer(v, 'hold');
      mark('held');
      await x.drained(y);
      mark('drained');
      await x.steer(v, 'peer');
      mark('steered');
      r = await steps.handoff();
      mark('handed-off');
    } catch (e) {
      await x.steer(v, null).catch(() => undefined);
      await y.steer(v, 'peer').catch(() => undefined);
      await y.holdFrames(false).catch(() => undefined);
      await y.steer(v, null).catch(() => undefined);
      throw e;
    }
    // OVS delivers to the port once its main thread has reconfigured it for the new device
    // (until then it drops what it sends there): the held frames wait for that
    for (const until = Date.now() + 1000; Date.now() < until && !(await y.live(vm.name).catch(() => false)); ) await new Promise((res) => setTimeout(res, 1));
    mark('live');
    await y.holdFrames(false);
    mark('released');
    await y.steer(v, 'port');
    mark('direct');
    return r;
  } finally {
    await y.busyPoll(false).catch(() => undefined);
  }
}
