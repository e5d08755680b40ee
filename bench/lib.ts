import { mkdirSync, writeFileSync } from 'node:fs';
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
