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
