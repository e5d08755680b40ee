// What the screens derive for display only: a campaign's progress bar. The report's figures
// (percentiles, lost, over budget, the histogram's bins ...) come from protocol/measure.ts
// through the core (report/get), the same ones the exports contain. Pure: no DOM.
import type { Campaign } from '../../../protocol/console.js';

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
