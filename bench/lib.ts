// Shared figures for benchmarks: every benchmark reports median, p99 and max beside the spread
// of the same run (the machine's noise), never a single number. The percentiles and the
// rounding are protocol/measure.ts's, as everywhere else.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { percentiles, round, roundedPercentiles, type Attribution, type Percentiles } from '../protocol/measure.js';
export interface Stats {
  n: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

/** The figures of a sample a benchmark cannot do without (its runs, its switches): percentiles
 * as protocol/measure.ts takes them, with min and mean. An empty one is a failed benchmark. */
export function stats(xs: number[], what = 'a measurement'): Stats {
  const p = percentiles(xs);
  if (p.n === 0) throw new Error(`no samples of ${what}`);
  return { n: p.n, p50: p.p50!, p99: p.p99!, max: p.max!, min: Math.min(...xs), mean: xs.reduce((a, b) => a + b, 0) / xs.length };
}

/** The background gaps of a run for the JSON line (there may be none: nulls then). */
export function background(xs: number[]): { p99: number | null; max: number | null; count: number } {
  const p: Percentiles = percentiles(xs);
  return { p99: round(p.p99, 2), max: round(p.max, 2), count: p.n };
}

/** `--name N` from argv: a positive number, dflt when absent; exits 2 with a clear message. */
export function numOpt(bench: string, name: string, dflt: number, integer = true): number {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    console.error(`bench ${bench}: ${name} needs a positive ${integer ? 'integer' : 'number'}`);
    process.exit(2);
  }
  return v;
}

/** `--name A[,B...]` from argv: one or more positive integers (each a case of the run), dflt
 * when absent; exits 2 with a clear message. */
export function numListOpt(bench: string, name: string, dflt: number[]): number[] {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(name);
  if (i < 0) return dflt;
  const vs = String(argv[i + 1] ?? '').split(',').map(Number);
  if (vs.length === 0 || vs.some((v) => !Number.isInteger(v) || v <= 0)) {
    console.error(`bench ${bench}: ${name} needs positive integers, comma-separated`);
    process.exit(2);
  }
  return vs;
}

export const quick = process.argv.includes('--quick');

/**
 * Keep this process, its threads and everything it starts off the datapath's CPU (the packet
 * loops pin themselves there), as a host keeps its housekeeping off the vSwitch's cores: a
 * benchmark's own work (parsing the probe's events, its timers) otherwise takes that core for
 * scheduler slices of milliseconds, longer than a guest's ring lasts at 1 Mpps. Returns the
 * housekeeping CPUs, or null when there is no other CPU to use (or --no-isolate).
 */
export function isolateLoopCpu(loopCpu: number): string | null {
  const others = cpus().map((_, i) => i).filter((i) => i !== loopCpu);
  if (process.argv.includes('--no-isolate') || others.length === 0) return null;
  const list = others.join(',');
  execFileSync('taskset', ['-a', '-p', '-c', list, String(process.pid)], { stdio: 'ignore' });
  return list;
}

export const round2 = (x: number): number => round(x, 2);

/** p50/p99/max, rounded to 2 decimals, for the JSON line (null for an empty sample). */
export function pct(xs: number[]): { p50: number | null; p99: number | null; max: number | null } {
  const { p50, p99, max } = roundedPercentiles(xs, 2);
  return { p50, p99, max };
}

/** Write the human report to bench/results/NAME-<time>.md and stderr, then the JSON line. */
export function finish(name: string, report: string[], result: object): void {
  const md = [`# bench ${name} — ${new Date().toISOString()}`, '', ...report, ''].join('\n');
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/${name}-${Date.now()}.md`, md);
  console.error(md);
  console.log(JSON.stringify({ bench: name, ...result }));
}

/** Run main; a failure prints its reason and exits 1. */
export function run(name: string, main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    console.error(`bench ${name} failed: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Break figures summed over the runs of a benchmark (failover, reconnect). */
export class BreakTally {
  private readonly gaps: number[] = [];
  private readonly background: number[] = [];
  private below = 0;
  lost = 0;
  dup = 0;
  offered = 0;
  links = 0;

  add(a: Attribution, run: { lost: number; dup: number; offered: number; links: number }): void {
    this.gaps.push(...a.event_gap_ms);
    this.background.push(...a.background_gap_ms);
    this.below += a.below_threshold;
    this.lost += run.lost;
    this.dup += run.dup;
    this.offered += run.offered;
    this.links += run.links;
  }

  /** The common part of the JSON line: lost, dup, frontend_events, gap_ms, background_gap_ms, offered. */
  json(): Record<string, unknown> {
    return {
      lost: this.lost,
      dup: this.dup,
      frontend_events: this.links,
      gap_ms: pct(this.gaps),
      /** every charged gap, for distribution plots (bench/run peers) */
      gaps_ms: this.gaps.map(round2),
      gap_below_threshold: this.below,
      background_gap_ms: background(this.background),
      offered: this.offered,
    };
  }

  /** Report lines for the gaps. */
  lines(event: string): string[] {
    const g = pct(this.gaps);
    const bg = background(this.background);
    return [
      `- receive gap charged to the ${event}: p50 ${g.p50} ms, p99 ${g.p99} ms, max ${g.max} ms`,
      `- background gaps of the same runs: ${bg.count}, p99 ${bg.p99 ?? '-'} ms, max ${bg.max ?? '-'} ms`,
    ];
  }
}
