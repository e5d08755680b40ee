// A campaign's break-time report as JSON, CSV or a self-contained HTML page (a table of every
// VM's switch with its measured figures beside the budget, and a bar per VM). Pure: no I/O.
import type { Budget, Measurement } from '../../../agent/src/common/protocol.js';
import { gapMs } from '../common/api.js';

export interface CampaignReport {
  release: string;
  approve: 'each' | { auto: Budget };
  started: string;
  result: { hosts: number; vms: number; upgraded: number; lost: number; gap_ms: { p50: number; p99: number; max: number }; wall_ms: number };
  measurements: Measurement[];
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);


export function renderReport(r: CampaignReport, format: 'json' | 'csv' | 'html'): string {
  if (format === 'json') return `${JSON.stringify(r, null, 2)}\n`;
  const cols = ['vm', 'from', 'to', 'window_us', 'passive_gap_us', 'dropped', 'probe_gap_ms', 'probe_lost', 'within_budget', 'anomalies'];
  const rows = r.measurements.map((m) => [m.vm, m.from, m.to, m.window_us.toFixed(0), m.passive_gap_us?.toFixed(0) ?? '', m.dropped, m.probe?.gap_ms?.toFixed(2) ?? '', m.probe?.lost ?? '', m.within_budget ?? '', m.anomalies.join('; ')]);
  if (format === 'csv') return [cols, ...rows].map((r) => r.map((v) => `"${String(v).replace(/"/g, '""')}"`).join(',')).join('\n') + '\n';
  const budget = r.approve === 'each' ? null : r.approve.auto;
  const max = Math.max(1, ...r.measurements.map(gapMs), budget?.max_gap_ms ?? 0);
  const bars = r.measurements
    .map((m, i) => {
      const w = (gapMs(m) / max) * 560;
      const over = budget ? gapMs(m) > budget.max_gap_ms : false;
      return `<text x="0" y="${i * 22 + 15}" font-size="12">${esc(m.vm)}</text><rect x="110" y="${i * 22 + 3}" width="${w.toFixed(1)}" height="16" fill="${over ? '#c0392b' : '#2e86c1'}"/><text x="${(115 + w).toFixed(1)}" y="${i * 22 + 15}" font-size="12">${gapMs(m).toFixed(2)} ms</text>`;
    })
    .join('');
  const budgetLine = budget ? `<line x1="${110 + (budget.max_gap_ms / max) * 560}" x2="${110 + (budget.max_gap_ms / max) * 560}" y1="0" y2="${r.measurements.length * 22}" stroke="#c0392b" stroke-dasharray="4"/>` : '';
  return `<!doctype html><html><head><meta charset="utf-8"><title>Hitless upgrade to ${esc(r.release)}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}</style></head><body>
<h1>Upgrade to ${esc(r.release)}</h1>
<p>Started ${esc(r.started)}; ${r.result.upgraded} of ${r.result.vms} VMs on ${r.result.hosts} hosts upgraded in ${r.result.wall_ms} ms; frames lost ${r.result.lost};
break per VM p50 ${r.result.gap_ms.p50} ms, p99 ${r.result.gap_ms.p99} ms, max ${r.result.gap_ms.max} ms${budget ? `; budget ${budget.max_gap_ms} ms and ${budget.max_lost} frames per VM` : '; every VM approved by hand'}.</p>
<h2>Break per VM</h2><svg width="760" height="${r.measurements.length * 22 + 4}">${bars}${budgetLine}</svg>
<h2>Measurements</h2><table><tr>${cols.map((c) => `<th>${c}</th>`).join('')}</tr>${rows.map((row) => `<tr>${row.map((v) => `<td>${esc(String(v))}</td>`).join('')}</tr>`).join('')}</table>
</body></html>
`;
}
