// Test bed for integration tests and benchmarks: temporary run dirs, veth pairs for uplinks,
// and cleanup of every process and link a test started, even when it fails.
import { execFileSync, spawn } from 'node:child_process';
import type { z } from 'zod';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { keeper } from '../protocol/native/keeper.js';
import type { DpOptions } from '../agent/src/native/launch.js';
import { DpProcess, KeeperProcess, nativeBin, ProbeProcess, type ProbeOptions, type ProbeVm } from './procs.js';
import { QemuGuest, type GuestOptions } from '../lab/src/guest.js';
import { heldSwitch, type HeldStep, Ovs, PACE_SOCKET } from '../agent/src/native/ovs.js';

export interface GuestHost {
  a: DpProcess;
  b: DpProcess;
  k: KeeperProcess;
  guest: QemuGuest;
  vm: string;
  /** a probe VM (virtio_user, through the keeper too) to send the guest a flow it reflects */
  probeVm: ProbeVm;
}

export interface UpgradeHost {
  a: DpProcess;
  b: DpProcess;
  k: KeeperProcess;
  /** the first (with up to 32 VMs, the only) probe process */
  probe: ProbeProcess;
  probes: ProbeProcess[];
  vms: string[];
  /** open fds of the keeper with its VMs configured, before any frontend connected */
  keeperIdleFds: number;
}

/** An OVS-DPDK generation of a test host: its instance and run dir (the keeper's gen run_dir). */
export interface OvsGen {
  gen: string;
  ovs: Ovs;
  runDir: string;
}

/** A host mid-upgrade whose generations are stock OVS-DPDK (DESIGN §12). */
export interface OvsHost {
  a: OvsGen;
  b: OvsGen;
  k: KeeperProcess;
  probe: ProbeProcess;
  vms: string[];
}

/**
 * Move a VM of an OVS host the way the agent does (HostAgent's move, OvsDpdkGens.switchVm): the
 * keeper pre-loads (and the target is woken) once the target busy-polls, then the VM's frames
 * are held at the target through the keeper's handoff (heldSwitch). Returns the keeper's
 * answers. settleMs: at least this long between the pre-load and the switch.
 */
export async function ovsSwitch(h: OvsHost, vm: string, to: 'A' | 'B', settleMs = 0, mark?: (step: HeldStep) => void) {
  const [from, target] = to === 'A' ? [h.b, h.a] : [h.a, h.b];
  const mac = labVms(h.vms.length)[h.vms.indexOf(vm)]!.mac;
  let preload: z.output<typeof keeper.sessionPreload.result> | undefined;
  const handoff = await heldSwitch(from.ovs, target.ovs, { name: vm, mac }, {
    ready: async () => {
      preload = await h.k.ctl.request(keeper.sessionPreload, { vm, gen: to });
      const wait = Math.max(settleMs, preload.ready_in_ns / 1e6);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    },
    handoff: () => h.k.ctl.request(keeper.handoffStart, { vm, gen: to }),
    mark,
  });
  return { preload: preload!, handoff };
}

export class Testbed {
  readonly dir: string;
  private readonly dps: DpProcess[] = [];
  private readonly keepers: KeeperProcess[] = [];
  private readonly probes: ProbeProcess[] = [];
  private readonly guests: QemuGuest[] = [];
  private readonly links: string[] = [];
  private readonly ovses: Ovs[] = [];
  private static seq = 0;

  /** rtPrio: the keeper's and the generations' --rt-prio (undefined: their default) */
  constructor(
    name: string,
    private readonly opts: { rtPrio?: number } = {},
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `hl-${name}-`));
  }

  private rtArgs(): string[] {
    return this.opts.rtPrio === undefined ? [] : ['--rt-prio', String(this.opts.rtPrio)];
  }

  private seqNo = 0;

  /** A generation; its run dir and EAL file prefix are unique to this test bed and call. */
  async dp(genId: string, opts: Partial<DpOptions> = {}): Promise<DpProcess> {
    const uniq = `${basename(this.dir)}-${genId}-${this.seqNo++}`;
    const p = await DpProcess.start({ genId, runDir: join(this.dir, uniq), filePrefix: `hl-dp-${uniq}`, ...opts, extraArgs: [...this.rtArgs(), ...(opts.extraArgs ?? [])] });
    this.dps.push(p);
    return p;
  }

  async keeper(name = 'keeper'): Promise<KeeperProcess> {
    const k = await KeeperProcess.start({ runDir: join(this.dir, `${name}-${this.seqNo++}`), extraArgs: this.rtArgs() });
    this.keepers.push(k);
    return k;
  }

  /** Generations A (old, peer-link server) and B (new, client), and a keeper attached to both
   * with B as the failover standby. */
  private async generationPair(): Promise<{ a: DpProcess; b: DpProcess; k: KeeperProcess }> {
    const peer = join(this.dir, `peer-${this.seqNo++}.sock`);
    const a = await this.dp('A', { peer: { socket: peer, server: true } });
    const b = await this.dp('B', { peer: { socket: peer, server: false } });
    const k = await this.keeper();
    await k.attach(a);
    await k.attach(b);
    await k.ctl.request(keeper.failoverStandby, { gen: 'B' });
    return { a, b, k };
  }

  /**
   * A host mid-upgrade: generations A (old, peer-link server) and B (new), a keeper attached to
   * both with B as the failover standby, and n probe VMs served by A through the keeper, with
   * a ring of flows between them at pps each (with queues, one such flow per queue). B serves
   * the same VMs (idle until handed over).
   */
  async upgradeHost(opts: { vms: number; pps: number; durationS: number; gapUs?: number; packed?: boolean; queues?: number; guestMemMb?: number; guestTouchMb?: number }): Promise<UpgradeHost> {
    const { a, b, k } = await this.generationPair();
    const vms = labVms(opts.vms);
    await b.serve(vms);
    const pvms = (await k.serve(a, vms)).map((v) => ({ ...v, packed: opts.packed ?? false, queues: opts.queues }));
    const keeperIdleFds = readdirSync(`/proc/${k.child.pid}/fd`).length;
    // one probe process holds at most 32 VMs (DPDK's ethdev port limit): flows ring within each
    const probes: ProbeProcess[] = [];
    for (let g = 0; g < pvms.length; g += 32) {
      const group = pvms.slice(g, g + 32);
      probes.push(
        await this.probe({
          name: `host${g / 32}`,
          vms: group,
          // with queues: as many flows per VM, one on each of its transmit queues
          flows: group.flatMap((v, i) => Array.from({ length: opts.queues ?? 1 }, () => ({ src: v.name, dst: group[(i + 1) % group.length]!.name, pps: opts.pps }))),
          durationS: opts.durationS,
          gapUs: opts.gapUs ?? 1000,
          ctlPath: join(this.dir, `probe-${this.seqNo++}.sock`),
          // the probe keeps 2560 mbufs per queue pair: 128 MB covers 8 VMs of one. Its memory is its VMs'
          // guest memory (virtio_user shares all of it with the backend): guestMemMb sets it
          memMb: opts.guestMemMb ?? 128 * Math.ceil((group.length * (opts.queues ?? 1)) / 8),
          // and guestTouchMb of it written, as guests that have used their memory
          ...(opts.guestTouchMb ? { extraArgs: ['--touch-memory', String(opts.guestTouchMb)] } : {}),
        }),
      );
    }
    return { a, b, k, probe: probes[0]!, probes, vms: vms.map((v) => v.name), keeperIdleFds };
  }

  /**
   * A host with a real QEMU guest (DESIGN §11): generations A and B as in upgradeHost, the
   * guest g1 served by A through the keeper (QEMU connects to the keeper's socket, or with
   * server: true the keeper connects to QEMU's), and a probe VM p1 on A (see reflectProbe).
   */
  async guestHost(opts: { server: boolean; queues?: number }): Promise<GuestHost> {
    const { a, b, k } = await this.generationPair();
    const [g, p] = [{ name: 'g1', mac: '02:00:00:00:01:01' }, { name: 'p1', mac: '02:00:00:00:00:01' }];
    await b.serve([g, p]);
    await a.serve([g]);
    let guest: QemuGuest;
    const gopts: Omit<GuestOptions, 'socket'> = { ...g, server: opts.server, queues: opts.queues };
    if (opts.server) {
      const socket = join(this.dir, `qemu-${this.seqNo++}`, `${g.name}.sock`);
      guest = await QemuGuest.launch({ ...gopts, socket });
      this.guests.push(guest);
      await guest.listening();
      await k.ctl.request(keeper.vmAdd, { vm: g.name, gen: 'A', socket, client: true });
      await guest.booted();
    } else {
      const socket = (await k.ctl.request(keeper.vmAdd, { vm: g.name, gen: 'A' })).socket;
      guest = await this.guest({ ...gopts, socket });
    }
    const [probeVm] = await k.serve(a, [p]);
    return { a, b, k, guest, vm: g.name, probeVm: probeVm! };
  }

  /** A probe on the guest host's probe VM sending flows of pps frames each to the guest, which
   * sends them back: the probe measures the path through the guest (loss, duplicates, gaps).
   * Several flows differ in their UDP port, so a multi-queue guest gets them on its queues. */
  reflectProbe(h: GuestHost, pps: number, opts: { gapUs?: number; flows?: number } = {}): Promise<ProbeProcess> {
    const flow = { src: h.probeVm.name, dst: h.guest.opts.mac, pps, reflect: true };
    return this.probe({
      name: `reflect${this.seqNo++}`,
      vms: [h.probeVm],
      flows: Array.from({ length: opts.flows ?? 1 }, () => flow),
      durationS: 3600,
      gapUs: opts.gapUs ?? 5000,
      ctlPath: join(this.dir, `probe-${this.seqNo++}.sock`),
    });
  }

  async guest(opts: GuestOptions): Promise<QemuGuest> {
    const g = await QemuGuest.start(opts);
    this.guests.push(g);
    return g;
  }

  async probe(opts: ProbeOptions): Promise<ProbeProcess> {
    const p = await ProbeProcess.start({ filePrefix: `hl-probe-${basename(this.dir)}-${opts.name}`, ...opts });
    this.probes.push(p);
    return p;
  }

  /**
   * An OVS-DPDK generation: its own ovsdb-server and ovs-vswitchd (PMD on core 1, sleeping when
   * idle), 2 MB hugepages reserved for it and given back at cleanup. Its run dir is short: the
   * keeper's sockets for it live there (<run dir>/vhost/<vm>.sock) and sun_path is 108 bytes.
   */
  async ovsGen(gen: string): Promise<OvsGen> {
    const runDir = join(this.dir, `o${this.seqNo++}`);
    mkdirSync(runDir, { recursive: true });
    const id = `${basename(this.dir).slice(-6)}${gen}${this.seqNo}`;
    const ovs = new Ovs(runDir, { pmdCore: 1, mainCore: null, memMb: 256, filePrefix: `hl-ovs-${id}`, pmdMaxSleepUs: Number(process.env.HL_MAXSLEEP ?? 1000), netns: `hlo-${id}`, hold: nativeBin('hitless-hold') });
    this.ovses.push(ovs);
    await ovs.start();
    return { gen, ovs, runDir };
  }

  /**
   * A host mid-upgrade on OVS-DPDK: generations A and B (stock ovs-vswitchd each), a keeper that
   * listens for their ports (backend: listen) with B as the failover standby, n probe VMs served
   * by A through the keeper, a ring of flows between them at pps each. Each VM has a
   * dpdkvhostuserclient port in both generations, at the same OpenFlow port number, and A's L2
   * flows (one per VM MAC) are copied to B in one bundle before anything moves.
   */
  async ovsHost(opts: { vms: number; pps: number; durationS: number; gapUs?: number }): Promise<OvsHost> {
    const [a, b] = [await this.ovsGen('A'), await this.ovsGen('B')];
    const k = await this.keeper();
    for (const g of [a, b]) {
      await k.ctl.request(keeper.genAttach, { gen: g.gen, run_dir: g.runDir, backend: 'listen' });
      await g.ovs.addPace(join(g.runDir, 'vhost', PACE_SOCKET));
    }
    await k.ctl.request(keeper.failoverStandby, { gen: 'B' });
    const vms = labVms(opts.vms);
    const pvms: ProbeVm[] = [];
    for (const v of vms) pvms.push({ ...v, socket: (await k.ctl.request(keeper.vmAdd, { vm: v.name, gen: 'A', mac: v.mac })).socket });
    for (const g of [a, b]) for (const [i, v] of vms.entries()) await g.ovs.addVhostClient(v.name, join(g.runDir, 'vhost', `${v.name}.sock`), i + 1);
    // each its hold port, as the agent's generations have (a VM's frames held through its switch)
    for (const g of [a, b]) await g.ovs.addHold(`hlh${this.seqNo++}`);
    // the peer link (a veth pair between the two generations' namespaces), and A's forwarding
    // state (fast-failover groups over it) carried to B
    await a.ovs.peerPair(`hlp${this.seqNo++}`);
    if (!(await b.ovs.adoptPeer(a.ovs))) throw new Error('no peer-link end parked in A');
    await a.ovs.splitL2(vms.map((v, i) => ({ port: i + 1, mac: v.mac })));
    await b.ovs.importState(await a.ovs.exportState());
    const probe = await this.probe({
      name: `ovs${this.seqNo++}`,
      vms: pvms,
      flows: pvms.map((v, i) => ({ src: v.name, dst: pvms[(i + 1) % pvms.length]!.name, pps: opts.pps })),
      durationS: opts.durationS,
      gapUs: opts.gapUs ?? 1000,
      ctlPath: join(this.dir, `probe-${this.seqNo++}.sock`),
    });
    return { a, b, k, probe, vms: vms.map((v) => v.name) };
  }

  /** A veth pair, both ends up; returns [a, b]. Removed at cleanup. */
  veth(): [string, string] {
    const id = `${process.pid % 10000}x${Testbed.seq++}`;
    const a = `hl${id}a`;
    const b = `hl${id}b`;
    execFileSync('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
    this.links.push(a);
    for (const n of [a, b]) {
      // no IPv6 chatter (router solicitations) on lab links: only our frames cross them
      execFileSync('sysctl', ['-qw', `net.ipv6.conf.${n}.disable_ipv6=1`]);
      execFileSync('ip', ['link', 'set', n, 'up']);
    }
    return [a, b];
  }

  /** Stop every process started so far (a test that sets up a host many times over). */
  async cleanupProcs(): Promise<void> {
    for (const p of this.probes.splice(0)) p.kill();
    await Promise.all(this.guests.splice(0).map((g) => g.stop()));
    await Promise.all(this.keepers.splice(0).map((k) => k.stop().catch(() => undefined)));
    await Promise.all(this.dps.splice(0).map((d) => d.stop().catch(() => undefined)));
    for (const o of this.ovses.splice(0)) o.stopSync();
  }

  async cleanup(): Promise<void> {
    await this.cleanupProcs();
    for (const l of this.links) {
      try {
        execFileSync('ip', ['link', 'del', l], { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
    }
    // HITLESS_KEEP_BED=1 keeps the processes' logs and run directories for a post-mortem
    if (process.env.HITLESS_KEEP_BED) process.stderr.write(`test bed kept: ${this.dir}\n`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Send raw Ethernet frames on an interface (for uplink tests): python3's AF_PACKET. */
export function sendFrames(iface: string, frames: Buffer[]): void {
  const script = [
    'import socket,sys,binascii',
    's=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)',
    's.bind((sys.argv[1],0))',
    'for h in sys.argv[2:]: s.send(binascii.unhexlify(h))',
  ].join('\n');
  execFileSync('python3', ['-c', script, iface, ...frames.map((f) => f.toString('hex'))]);
}

/** Capture frames of one ethertype on an interface for ms; resolves with them once ready() has
 * been awaited and the time is up. python3's AF_PACKET, so no capture tool is needed. */
export function captureFrames(iface: string, ethertype: number, ms: number): { ready: Promise<void>; frames: Promise<Buffer[]> } {
  const script = [
    'import socket,sys,time,binascii',
    's=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(int(sys.argv[2])))',
    's.bind((sys.argv[1],0)); s.settimeout(0.05)',
    'print("ready",flush=True)',
    'end=time.time()+float(sys.argv[3])/1000',
    'while time.time()<end:',
    '  try: print(binascii.hexlify(s.recv(2048)).decode(),flush=True)',
    '  except socket.timeout: pass',
  ].join('\n');
  const child = spawn('python3', ['-c', script, iface, String(ethertype), String(ms)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let readyResolve: () => void;
  const ready = new Promise<void>((r) => (readyResolve = r));
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    if (out.startsWith('ready\n')) readyResolve();
  });
  const frames = new Promise<Buffer[]>((res, rej) =>
    child.once('exit', (code) => {
      if (code !== 0) return rej(new Error(`capture on ${iface} failed (${code})`));
      res(out.split('\n').slice(1).filter((l) => l.length > 0).map((h) => Buffer.from(h, 'hex')));
    }),
  );
  return { ready, frames };
}

export function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

/** A minimal broadcast frame from src (an unknown ethertype, padded to 60 bytes). */
export function broadcastFrom(src: string): Buffer {
  const f = Buffer.alloc(60);
  f.fill(0xff, 0, 6);
  macBytes(src).copy(f, 6);
  f.writeUInt16BE(0x88b5, 12); // IEEE local experimental ethertype
  return f;
}

export function vmMac(i: number): string {
  return `02:00:00:00:00:${i.toString(16).padStart(2, '0')}`;
}

/** n lab VMs: v1..vn with MACs 02:00:00:00:00:01.. */
export function labVms(n: number, prefix = 'v'): { name: string; mac: string }[] {
  return Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i + 1}`, mac: vmMac(i + 1) }));
}
