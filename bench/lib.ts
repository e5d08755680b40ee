import { mkdirSync, writeFileSync } from 'node:fs';
import type { Attribution } from '../agent/src/native/breaktime.js';
// Shared figures for benchmarks: every benchmark reports median, p99 and max beside the spread
// of the same run (the machine's noise), never a single number.
export interface Stats {
  n: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles of a sample. */
export function stats(xs: number[]): Stats {
  if (xs.length === 0) return { n: 0, min: NaN, p50: NaN, p99: NaN, max: NaN, mean: NaN };
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
  return {
    n: s.length,
    min: s[0]!,
    p50: at(50),
    p99: at(99),
    max: s[s.length - 1]!,
    mean: s.reduce((a, b) => a + b, 0) / s.length,
  };
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

export const quick = process.argv.includes('--quick');

export const round2 = (x: number): number => Math.round(x * 100) / 100;

/** p50/p99/max, rounded, for the JSON line. */
export function pct(xs: number[]): { p50: number; p99: number; max: number } {
  const s = stats(xs);
  return { p50: round2(s.p50), p99: round2(s.p99), max: round2(s.max) };
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
    const bg = stats(this.background);
    return {
      lost: this.lost,
      dup: this.dup,
      frontend_events: this.links,
      gap_ms: pct(this.gaps),
      /** every charged gap, for distribution plots (bench/run peers) */
      gaps_ms: this.gaps.map(round2),
      gap_below_threshold: this.below,
      background_gap_ms: { p99: round2(bg.p99), max: round2(bg.max), count: bg.n },
      offered: this.offered,
    };
  }

  /** Report lines for the gaps. */
  lines(event: string): string[] {
    const g = pct(this.gaps);
    const bg = stats(this.background);
    return [
      `- receive gap charged to the ${event}: p50 ${g.p50} ms, p99 ${g.p99} ms, max ${g.max} ms`,
      `- background gaps of the same runs: ${bg.n}, p99 ${round2(bg.p99)} ms, max ${round2(bg.max)} ms`,
    ];
  }
}
