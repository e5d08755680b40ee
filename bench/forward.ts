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
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDp, runTestpmd, type Run } from './forwarders.js';
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

async function main(): Promise<void> {
  const dpRuns: Run[] = [];
  const tpRuns: Run[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      dpRuns.push(await runDp(dir, i, seconds));
      tpRuns.push(await runTestpmd(dir, i, seconds));
      const [a, b] = [dpRuns[i]!, tpRuns[i]!];
      console.error(`run ${i + 1}/${runs}: hitless-dp ${a.mpps.toFixed(3)} Mpps ${a.cpp?.toFixed(0)} cyc/pkt, testpmd io ${b.mpps.toFixed(3)} Mpps ${b.cpp?.toFixed(0)} cyc/pkt`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const d: Stats = stats(dpRuns.map((r) => r.mpps));
  const t: Stats = stats(tpRuns.map((r) => r.mpps));
  const dc: Stats = stats(dpRuns.flatMap((r) => (r.cpp === null ? [] : [r.cpp])));
  const tc: Stats = stats(tpRuns.flatMap((r) => (r.cpp === null ? [] : [r.cpp])));
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
