// The forwarders the throughput benchmarks compare, each in the same topology: two probe VMs
// (virtio_user, one lcore) flooding 64-byte frames a->b and b->a through one forwarding core.
// Rates are taken from the probe's own counters over a steady window (after every port is up),
// so a forwarder that takes longer to connect is not charged for it.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { dp } from '../protocol/native/dp.js';
import { probe as probeCmds } from '../protocol/native/probe.js';
import { DpProcess, ProbeProcess } from '../testing/procs.js';
import { vmMac } from '../testing/testbed.js';
import { Ovs } from '../agent/src/native/ovs.js';

export const VMS = [
  { name: 'a', mac: vmMac(1) },
  { name: 'b', mac: vmMac(2) },
];

export interface Run {
  mpps: number;
  /** forwarder TSC cycles per packet over its busy iterations (null: it does not say) */
  cpp: number | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function received(p: ProbeProcess): Promise<number> {
  const s = await p.ctl!.request(probeCmds.statsShow, {});
  return s.totals.received;
}

/** Flood through sockets for `seconds` once frames flow both ways; Mpps the probe received. */
export async function measure(dir: string, sockets: [string, string], tag: string, seconds: number, server = false): Promise<number> {
  const p = await ProbeProcess.start({
    name: `bench-${tag}`,
    vms: VMS.map((v, i) => ({ ...v, socket: sockets[i]!, server })),
    flows: [
      { src: 'a', dst: 'b', pps: 0 },
      { src: 'b', dst: 'a', pps: 0 },
    ],
    durationS: seconds + 30,
    memMb: 256,
    ctlPath: join(dir, `probe-${tag}.sock`),
  });
  try {
    let prev = await received(p);
    for (let i = 0; i < 150; i++) {
      await sleep(100);
      const now = await received(p);
      if (now - prev > 1000) break; // flowing
      prev = now;
    }
    await sleep(300);
    const t0 = performance.now();
    const r0 = await received(p);
    await sleep(seconds * 1000);
    const r1 = await received(p);
    return (r1 - r0) / ((performance.now() - t0) / 1000) / 1e6;
  } finally {
    await p.stop();
  }
}

/** A hugetlbfs mount for the forwarder's own memory (OVS always uses hugepages); none: 4 KB pages. */
export type HugeDir = string | undefined;

function clearHuge(huge: HugeDir): void {
  if (!huge) return;
  for (const f of readdirSync(huge)) rmSync(join(huge, f), { force: true }); // pages back to the pool
}

export async function runDp(dir: string, i: number, seconds: number, huge?: HugeDir): Promise<Run> {
  const gen = await DpProcess.start({ genId: `bench${i}`, runDir: join(dir, `dp${i}`), lcore: 1, ...(huge ? { hugeDir: huge } : {}) });
  try {
    for (const v of VMS) await gen.addVm(v.name, v.mac);
    const before = (await gen.ctl.request(dp.statsShow, {})).loop;
    const mpps = await measure(dir, [gen.vhostSocket('a'), gen.vhostSocket('b')], `dp${i}`, seconds);
    const { loop } = await gen.ctl.request(dp.statsShow, {});
    return { mpps, cpp: (loop.busy_cycles - before.busy_cycles) / (loop.busy_pkts - before.busy_pkts) };
  } finally {
    await gen.stop();
    clearHuge(huge);
  }
}

export async function runTestpmd(dir: string, i: number, seconds: number, huge?: HugeDir): Promise<Run> {
  const d = join(dir, `tp${i}`);
  mkdirSync(d, { recursive: true });
  const socks: [string, string] = [join(d, 'a.sock'), join(d, 'b.sock')];
  // main lcore 0 only waits on stdin; the forwarding lcore 1 is the measured core
  const tp: ChildProcess = spawn(
    'dpdk-testpmd',
    [
      '-l', '0,1', ...(huge ? [`--huge-dir=${huge}`] : ['--no-huge']), '-m', '256', '--no-pci', `--file-prefix=hl-bench-tp${i}`, '--log-level=error',
      '--vdev', `net_vhost0,iface=${socks[0]},queues=1`,
      '--vdev', `net_vhost1,iface=${socks[1]},queues=1`,
      '--', '--forward-mode=io', '--nb-cores=1', '--total-num-mbufs=16384', '--auto-start', '--record-core-cycles',
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let err = '';
  let out = '';
  tp.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  tp.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  let mpps = NaN;
  try {
    for (let t = 0; t < 100 && !(existsSync(socks[0]) && existsSync(socks[1])); t++) await sleep(100);
    mpps = await measure(d, socks, `tp${i}`, seconds);
  } catch (e) {
    throw new Error(`testpmd run ${i}: ${(e as Error).message}\n${err}`);
  } finally {
    tp.stdin!.end('\n');
    const t = setTimeout(() => tp.kill('SIGKILL'), 5000);
    await new Promise((r) => (tp.exitCode !== null ? r(null) : tp.once('exit', r)));
    clearTimeout(t);
    clearHuge(huge);
  }
  // printed when forwarding stops: "CPU cycles/packet=225.01 (busy cycles=... / total io packets=...)"
  const m = out.match(/CPU cycles\/packet=([\d.]+)/);
  return { mpps, cpp: m ? Number(m[1]) : null };
}

/** OVS-DPDK: its PMD on lcore 1, vhost-user client ports to server-mode probe VMs, L2 flows. */
export async function runOvs(dir: string, i: number, seconds: number): Promise<Run> {
  const d = join(dir, `ovs${i}`);
  mkdirSync(d, { recursive: true });
  const ovs = new Ovs(d, { pmdCore: 1, mainCore: 0, memMb: 512 });
  const socks: [string, string] = [join(d, 'vm-a.sock'), join(d, 'vm-b.sock')];
  try {
    await ovs.start();
    // the probe listens; OVS connects once its ports exist
    const rate = measure(d, socks, `ovs${i}`, seconds, true);
    for (let t = 0; t < 100 && !(existsSync(socks[0]) && existsSync(socks[1])); t++) await sleep(50);
    for (const [k, v] of VMS.entries()) await ovs.addVhostClient(`vm${v.name}`, socks[k]!);
    await ovs.l2Flows(VMS.map((v) => ({ port: `vm${v.name}`, mac: v.mac })));
    const mpps = await rate;
    return { mpps, cpp: await ovs.pmdCyclesPerPacket() };
  } finally {
    ovs.stopSync();
  }
}
