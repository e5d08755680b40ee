// A campaign's break-time report: summary (versions before and after per host, VMs moved,
// frames lost, break p50/p99/max beside the budget), every VM's measured switch, a histogram
// of the breaks, approvals and denials with their reasons, and rollbacks. Rendered as JSON, CSV
// or a self-contained HTML page (no script: it prints to PDF as is). Pure: no I/O.
import { gapMs, type Campaign, type Report, type ReportSummary, type ReportVm } from '../common/api.js';

function pct(xs: number[], p: number): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! * 1000) / 1000;
}

export function vmLines(c: Campaign): ReportVm[] {
  const b = c.plan.spec.budget;
  return c.hosts.flatMap((h) =>
    h.vms.map((v) => {
      const m = v.measurement;
      return {
        host: h.host,
        vm: v.vm,
        state: v.state,
        mode: m?.mode ?? null,
        from: m?.from ?? null,
        to: m?.to ?? null,
        // a swap's window is well under a microsecond: keep what it measured
        window_us: m ? (m.window_us < 10 ? Math.round(m.window_us * 100) / 100 : Math.round(m.window_us)) : null,
        passive_gap_us: m?.passive_gap_us ?? null,
        probe_gap_ms: m?.probe?.gap_ms ?? null,
        gap_ms: m ? Math.round(gapMs(m) * 1000) / 1000 : null,
        dropped: m?.dropped ?? null,
        within_budget: m ? gapMs(m) <= b.max_gap_ms && m.dropped <= b.max_lost : null,
        decision: v.decision?.decision ?? null,
        by: v.decision?.by ?? null,
        reason: v.decision?.reason ?? null,
      };
    }),
  );
}

export function summarize(c: Campaign): ReportSummary {
  const lines = vmLines(c);
  const gaps = lines.flatMap((l) => (l.gap_ms === null ? [] : [l.gap_ms]));
  return {
    campaign: c.id,
    release: c.plan.spec.release,
    state: c.state,
    started: c.started,
    finished: c.finished,
    budget: c.plan.spec.budget,
    hosts: c.hosts.map((h) => ({ host: h.host, wave: c.plan.waves[h.wave]?.name ?? String(h.wave), before: h.from, after: h.state === 'committed' || h.state === 'skipped' ? h.to : h.from, state: h.state, error: h.error })),
    vms: lines.length,
    moved: lines.filter((l) => l.state === 'moved').length,
    denied: lines.filter((l) => l.state === 'denied').length,
    lost: lines.reduce((n, l) => n + (l.dropped ?? 0), 0),
    over_budget: lines.filter((l) => l.within_budget === false).length,
    gap_ms: { p50: pct(gaps, 50), p99: pct(gaps, 99), max: gaps.length ? Math.max(...gaps) : null },
  };
}

const esc = (s: unknown) => String(s ?? '').replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
const COLS: (keyof ReportVm)[] = ['host', 'vm', 'state', 'mode', 'from', 'to', 'window_us', 'passive_gap_us', 'probe_gap_ms', 'gap_ms', 'dropped', 'within_budget', 'decision', 'by', 'reason'];

export function renderCsv(c: Campaign): string {
  const q = (v: unknown) => `"${String(v ?? '').replace(/"/g, '""')}"`;
  return [COLS, ...vmLines(c).map((l) => COLS.map((k) => l[k]))].map((r) => r.map(q).join(',')).join('\n') + '\n';
}

export function buildReport(c: Campaign): Report {
  return { summary: summarize(c), vms: vmLines(c), decisions: c.decisions, rollbacks: c.rollbacks };
}

export function renderJson(c: Campaign): string {
  return `${JSON.stringify({ ...buildReport(c), campaign: c }, null, 2)}\n`;
}

/** Bins of the per-VM break (ms) for the histogram: equal widths up to the budget or the max. */
export function histogram(gaps: number[], budgetMs: number, bins = 10): { lo: number; hi: number; n: number }[] {
  const top = Math.max(budgetMs, ...gaps, 0.001);
  const w = top / bins;
  const out = Array.from({ length: bins }, (_, i) => ({ lo: i * w, hi: (i + 1) * w, n: 0 }));
  for (const g of gaps) out[Math.min(bins - 1, Math.floor(g / w))]!.n++;
  return out;
}

export function renderHtml(c: Campaign): string {
  const s = summarize(c);
  const lines = vmLines(c);
  const gaps = lines.flatMap((l) => (l.gap_ms === null ? [] : [l.gap_ms]));
  const h = histogram(gaps, s.budget.max_gap_ms);
  const maxN = Math.max(1, ...h.map((b) => b.n));
  const W = 600;
  const H = 160;
  const bw = W / h.length;
  const bars = h
    .map((b, i) => {
      const bh = (b.n / maxN) * (H - 20);
      return `<rect x="${(i * bw + 40).toFixed(1)}" y="${(H - bh).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${bh.toFixed(1)}" fill="${b.lo >= s.budget.max_gap_ms ? '#c0392b' : '#2e86c1'}"/>` +
        `<text x="${(i * bw + 40 + bw / 2).toFixed(1)}" y="${(H - bh - 4).toFixed(1)}" font-size="11" text-anchor="middle">${b.n || ''}</text>` +
        `<text x="${(i * bw + 40).toFixed(1)}" y="${H + 14}" font-size="10">${b.lo.toFixed(1)}</text>`;
    })
    .join('');
  const top = h.at(-1)!.hi;
  const bx = 40 + (s.budget.max_gap_ms / top) * W;
  const decisions = c.decisions;
  const row = (cells: unknown[]) => `<tr>${cells.map((x) => `<td>${esc(x)}</td>`).join('')}</tr>`;
  return `<!doctype html><html><head><meta charset="utf-8"><title>Hitless campaign ${esc(c.id)}: upgrade to ${esc(s.release)}</title>
<style>body{font:13px system-ui,sans-serif;margin:24px;color:#111}table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #bbb;padding:3px 7px;text-align:left}th{background:#eee}.bad{color:#c0392b;font-weight:bold}</style></head><body>
<h1>Campaign ${esc(c.id)}: upgrade to ${esc(s.release)}</h1>
<p>State <b>${esc(s.state)}</b>; started ${esc(s.started)}${s.finished ? `, finished ${esc(s.finished)}` : ''}. ${s.moved} of ${s.vms} VMs moved, ${s.denied} denied; frames lost ${s.lost}; ${s.over_budget} over budget.
Break per VM: p50 ${s.gap_ms.p50 ?? '-'} ms, p99 ${s.gap_ms.p99 ?? '-'} ms, max ${s.gap_ms.max ?? '-'} ms; budget ${s.budget.max_gap_ms} ms and ${s.budget.max_lost} lost frames per VM.${c.error ? ` <span class="bad">${esc(c.error)}</span>` : ''}</p>
<h2>Hosts</h2><table><tr><th>host</th><th>wave</th><th>before</th><th>after</th><th>state</th><th>problem</th></tr>${s.hosts.map((x) => row([x.host, x.wave, x.before, x.after, x.state, x.error])).join('')}</table>
<h2>Break time per VM (histogram, ms)</h2>
<svg width="${W + 60}" height="${H + 24}"><line x1="40" y1="${H}" x2="${W + 40}" y2="${H}" stroke="#333"/>${bars}<line x1="${bx.toFixed(1)}" x2="${bx.toFixed(1)}" y1="0" y2="${H}" stroke="#c0392b" stroke-dasharray="4"/><text x="${(bx + 4).toFixed(1)}" y="12" font-size="11" fill="#c0392b">budget ${s.budget.max_gap_ms} ms</text></svg>
<h2>Every VM</h2><table><tr>${COLS.map((k) => `<th>${k}</th>`).join('')}</tr>${lines.map((l) => `<tr${l.within_budget === false ? ' class="bad"' : ''}>${COLS.map((k) => `<td>${esc(l[k])}</td>`).join('')}</tr>`).join('')}</table>
<h2>Approvals and denials</h2>${decisions.length ? `<table><tr><th>at</th><th>wave</th><th>host</th><th>vm</th><th>decision</th><th>by</th><th>reason</th></tr>${decisions.map((d) => row([d.at, d.wave_name, d.host ?? '(whole wave)', d.vm ?? '', d.decision, d.by, d.reason])).join('')}</table>` : '<p>None: the VMs moved within the budget without asking.</p>'}
<h2>Rollbacks</h2>${c.rollbacks.length ? `<table><tr><th>at</th><th>by</th><th>scope</th><th>result</th></tr>${c.rollbacks.map((r) => row([r.at, r.by, r.scope, r.result])).join('')}</table>` : '<p>None.</p>'}
</body></html>
`;
}
