// bench/run forward [--quick] [--runs N] [--seconds S]
//
// Forwarding rate of one hitless-dp generation, 64-byte frames VM -> VM through one forwarding
// core, at flood rate; and in the same run the same topology through dpdk-testpmd
// --forward-mode=io (the limit: no lookup, no per-VM counters). Runs alternate dp/testpmd so
// machine noise hits both alike. The probe (two virtio_user VMs, one lcore) floods a->b and
// b->a; the forwarder has the other core to itself.
//
// Two figures per run: the rate the probe received (Mpps), and the forwarder's own cost in TSC
// cycles per packet over the iterations that moved packets (testpmd: --record-core-cycles;
// hitless-dp: its loop counters). Cycles/packet does not depend on whether the generator or the
// forwarder was the bottleneck, so it is the fairer comparison of the two forwarders.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DpProcess, ProbeProcess } from '../agent/src/native/procs.js';
import { dp } from '../agent/src/native/dpProtocol.js';
import { vmMac } from '../agent/src/native/testbed.js';
import { stats, type Stats } from './lib.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const opt = (name: string, dflt: number): number => {
  const i = argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) {
    console.error(`bench forward: ${name} needs a positive number`);
    process.exit(2);
  }
  return v;
};
const runs = opt('--runs', quick ? 4 : 8);
const seconds = opt('--seconds', quick ? 3 : 6);

const dir = mkdtempSync(join(tmpdir(), 'hl-bench-fwd-'));
const VMS = [
  { name: 'a', mac: vmMac(1) },
  { name: 'b', mac: vmMac(2) },
];

interface Run {
  mpps: number;
  cpp: number;
}

async function measure(sockets: [string, string], tag: string): Promise<number> {
  const probe = await ProbeProcess.start({
    name: `bench-${tag}`,
    vms: VMS.map((v, i) => ({ ...v, socket: sockets[i]! })),
    flows: [
      { src: 'a', dst: 'b', pps: 0 },
      { src: 'b', dst: 'a', pps: 0 },
    ],
    durationS: seconds,
    memMb: 256,
  });
  const sum = await probe.summary;
  return sum.totals.received / sum.duration_s / 1e6;
}

async function runDp(i: number): Promise<Run> {
  const gen = await DpProcess.start({ genId: `bench${i}`, runDir: join(dir, `dp${i}`), lcore: 1 });
  try {
    for (const v of VMS) await gen.addVm(v.name, v.mac);
    const mpps = await measure([gen.vhostSocket('a'), gen.vhostSocket('b')], `dp${i}`);
    const { loop } = await gen.ctl.request(dp.statsShow, {});
    return { mpps, cpp: loop.busy_cycles / loop.busy_pkts };
  } finally {
    await gen.stop();
  }
}

async function runTestpmd(i: number): Promise<Run> {
  const d = join(dir, `tp${i}`);
  mkdirSync(d, { recursive: true });
  const socks: [string, string] = [join(d, 'a.sock'), join(d, 'b.sock')];
  // main lcore 0 only waits on stdin; the forwarding lcore 1 is the measured core
  const tp: ChildProcess = spawn(
    'dpdk-testpmd',
    [
      '-l', '0,1', '--no-huge', '-m', '256', '--no-pci', `--file-prefix=hl-bench-tp${i}`, '--log-level=error',
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
    for (let t = 0; t < 100; t++) {
      const { existsSync } = await import('node:fs');
      if (existsSync(socks[0]) && existsSync(socks[1])) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    mpps = await measure(socks, `tp${i}`);
  } catch (e) {
    throw new Error(`testpmd run ${i}: ${(e as Error).message}\n${err}`);
  } finally {
    tp.stdin!.end('\n');
    const t = setTimeout(() => tp.kill('SIGKILL'), 5000);
    await new Promise((r) => (tp.exitCode !== null ? r(null) : tp.once('exit', r)));
    clearTimeout(t);
  }
  // printed when forwarding stops: "CPU cycles/packet=225.01 (busy cycles=... / total io packets=...)"
  const m = out.match(/CPU cycles\/packet=([\d.]+)/);
  if (!m) throw new Error(`testpmd run ${i}: no cycles/packet in its output`);
  return { mpps, cpp: Number(m[1]) };
}

async function main(): Promise<void> {
  const dpRuns: Run[] = [];
  const tpRuns: Run[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      dpRuns.push(await runDp(i));
      tpRuns.push(await runTestpmd(i));
      const [a, b] = [dpRuns[i]!, tpRuns[i]!];
      console.error(`run ${i + 1}/${runs}: hitless-dp ${a.mpps.toFixed(3)} Mpps ${a.cpp.toFixed(0)} cyc/pkt, testpmd io ${b.mpps.toFixed(3)} Mpps ${b.cpp.toFixed(0)} cyc/pkt`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const d: Stats = stats(dpRuns.map((r) => r.mpps));
  const t: Stats = stats(tpRuns.map((r) => r.mpps));
  const dc: Stats = stats(dpRuns.map((r) => r.cpp));
  const tc: Stats = stats(tpRuns.map((r) => r.cpp));
  const spread = (s: Stats): number => round((100 * (s.max - s.min)) / s.p50);
  const result = {
    bench: 'forward',
    dp_mpps: round(d.p50),
    testpmd_mpps: round(t.p50),
    ratio: round(d.p50 / t.p50),
    runs,
    seconds_per_run: seconds,
    frame_bytes: 64,
    // forwarder cost; ratio_cycles = testpmd cycles / dp cycles (1.0 = as cheap as testpmd io)
    dp_cycles_per_pkt: round(dc.p50),
    testpmd_cycles_per_pkt: round(tc.p50),
    ratio_cycles: round(tc.p50 / dc.p50),
    ratio_cycles_best: round(tc.min / dc.min),
    dp: { mpps: d, cycles_per_pkt: dc },
    testpmd: { mpps: t, cycles_per_pkt: tc },
    // noise: spread (max - min) / median of the same measurement across this invocation's runs
    noise_pct: { dp_mpps: spread(d), testpmd_mpps: spread(t), dp_cycles: spread(dc), testpmd_cycles: spread(tc) },
  };
  const row = (name: string, s: Stats, digits: number): string =>
    `| ${name} | ${s.p50.toFixed(digits)} | ${s.p99.toFixed(digits)} | ${s.max.toFixed(digits)} | ${s.min.toFixed(digits)} | ${spread(s)}% |`;
  const report = [
    `# bench forward — ${new Date().toISOString()}`,
    '',
    `64-byte frames, probe flooding a->b and b->a through one forwarding lcore; ${runs} runs x ${seconds} s, alternating.`,
    '',
    '| measure | median | p99 | max | min | spread |',
    '|---|---|---|---|---|---|',
    row('hitless-dp Mpps', d, 3),
    row('testpmd io Mpps', t, 3),
    row('hitless-dp cycles/pkt', dc, 1),
    row('testpmd io cycles/pkt', tc, 1),
    '',
    `ratio of median rates: ${result.ratio}; testpmd/dp cycles per packet: median ${result.ratio_cycles}, best ${result.ratio_cycles_best}`,
    '',
  ].join('\n');
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/forward-${Date.now()}.md`, report);
  console.error(report);
  console.log(JSON.stringify(result));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

main().catch((e: unknown) => {
  console.error(`bench forward failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
