// What the screens derive for display only: a campaign's progress bar and the report histogram's
// bins. The report's figures themselves (percentiles, lost, over budget ...) come from the core
// (report/get), the same ones the exports contain. Pure: no DOM.
import type { Campaign } from '../common/api.js';

export interface Progress {
  total: number;
  moved: number;
  denied: number;
  failed: number;
  rolledBack: number;
  active: number;
  /** VMs in a final state (moved, denied, failed, rolled back) */
  done: number;
}

export function campaignProgress(c: Campaign): Progress {
  const p: Progress = { total: 0, moved: 0, denied: 0, failed: 0, rolledBack: 0, active: 0, done: 0 };
  for (const h of c.hosts)
    for (const v of h.vms) {
      p.total++;
      if (v.state === 'moved') p.moved++;
      else if (v.state === 'denied') p.denied++;
      else if (v.state === 'failed') p.failed++;
      else if (v.state === 'rolled-back') p.rolledBack++;
      else if (v.state === 'switching' || v.state === 'awaiting-approval') p.active++;
    }
  p.done = p.moved + p.denied + p.failed + p.rolledBack;
  return p;
}

export interface Bin {
  lo: number;
  hi: number;
  count: number;
}

/** Histogram bins over [0, max(values, budget)] in "nice" ms widths (0.1, 0.2, 0.5, 1, 2, 5 ...),
 * at most `maxBins` of them; the last bin includes its upper edge. */
export function histogram(values: readonly number[], budgetMs: number | null, maxBins = 20): Bin[] {
  if (values.length === 0) return [];
  const top = Math.max(...values, budgetMs ?? 0, 1e-3);
  const raw = top / maxBins;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const width = [1, 2, 5, 10].map((k) => k * mag).find((w) => w >= raw) ?? 10 * mag;
  const n = Math.max(1, Math.ceil(top / width - 1e-9));
  const bins: Bin[] = Array.from({ length: n }, (_, i) => ({ lo: i * width, hi: (i + 1) * width, count: 0 }));
  for (const v of values) {
    const i = Math.min(n - 1, Math.max(0, Math.floor(v / width)));
    bins[i]!.count++;
  }
  return bins;
}
