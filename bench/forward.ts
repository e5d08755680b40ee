// bench/run forward [--quick] [--runs N] [--seconds S]
//
// Forwarding rate of one hitless-dp generation, 64-byte frames VM -> VM through one forwarding
// core, at flood rate; and in the same run the same topology through dpdk-testpmd
// --forward-mode=io (the limit: no lookup, no per-VM counters). Runs alternate dp/testpmd so
// machine noise hits both alike. The probe (two virtio_user VMs, one lcore) floods a->b and
// b->a; the forwarder has the other core to itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DpProcess, ProbeProcess } from '../agent/src/native/procs.js';
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
const runs = opt('--runs', quick ? 3 : 5);
const seconds = opt('--seconds', quick ? 4 : 10);

const dir = mkdtempSync(join(tmpdir(), 'hl-bench-fwd-'));
const VMS = [
  { name: 'a', mac: vmMac(1) },
  { name: 'b', mac: vmMac(2) },
];

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

async function runDp(i: number): Promise<number> {
  const gen = await DpProcess.start({ genId: `bench${i}`, runDir: join(dir, `dp${i}`), lcore: 1 });
  try {
    for (const v of VMS) await gen.addVm(v.name, v.mac);
    return await measure([gen.vhostSocket('a'), gen.vhostSocket('b')], `dp${i}`);
  } finally {
    await gen.stop();
  }
}

async function runTestpmd(i: number): Promise<number> {
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
      '--', '--forward-mode=io', '--nb-cores=1', '--total-num-mbufs=16384', '--auto-start',
    ],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  let err = '';
  tp.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  try {
    for (let t = 0; t < 100; t++) {
      const { existsSync } = await import('node:fs');
      if (existsSync(socks[0]) && existsSync(socks[1])) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return await measure(socks, `tp${i}`);
  } catch (e) {
    throw new Error(`testpmd run ${i}: ${(e as Error).message}\n${err}`);
  } finally {
    tp.stdin!.end('\n');
    const t = setTimeout(() => tp.kill('SIGKILL'), 5000);
    await new Promise((r) => (tp.exitCode !== null ? r(null) : tp.once('exit', r)));
    clearTimeout(t);
  }
}

async function main(): Promise<void> {
  const dpRuns: number[] = [];
  const tpRuns: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      dpRuns.push(await runDp(i));
      tpRuns.push(await runTestpmd(i));
      console.error(`run ${i + 1}/${runs}: hitless-dp ${dpRuns[i]!.toFixed(3)} Mpps, testpmd io ${tpRuns[i]!.toFixed(3)} Mpps`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const d: Stats = stats(dpRuns);
  const t: Stats = stats(tpRuns);
  const result = {
    bench: 'forward',
    dp_mpps: round(d.p50),
    testpmd_mpps: round(t.p50),
    ratio: round(d.p50 / t.p50),
    runs,
    seconds_per_run: seconds,
    frame_bytes: 64,
    dp: d,
    testpmd: t,
    // noise: spread of the same measurement across runs of this invocation
    noise_pct: { dp: round((100 * (d.max - d.min)) / d.p50), testpmd: round((100 * (t.max - t.min)) / t.p50) },
  };
  const report = [
    `# bench forward — ${new Date().toISOString()}`,
    '',
    `64-byte frames, probe flooding a->b and b->a through one forwarding lcore; ${runs} runs x ${seconds} s, alternating.`,
    '',
    '| forwarder | median Mpps | p99 | max | min | spread |',
    '|---|---|---|---|---|---|',
    `| hitless-dp | ${d.p50.toFixed(3)} | ${d.p99.toFixed(3)} | ${d.max.toFixed(3)} | ${d.min.toFixed(3)} | ${result.noise_pct.dp}% |`,
    `| testpmd io | ${t.p50.toFixed(3)} | ${t.p99.toFixed(3)} | ${t.max.toFixed(3)} | ${t.min.toFixed(3)} | ${result.noise_pct.testpmd}% |`,
    '',
    `ratio (medians): ${result.ratio}`,
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
