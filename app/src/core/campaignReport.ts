// A campaign's break-time report, the one renderer of it: summary (versions before and after per
// host, VMs moved, frames lost, break p50/p99/max beside the budget and the run's background
// gaps), every VM's measured switch, a histogram of the breaks, approvals and denials with their
// reasons, and rollbacks. The console's screen (report/get), its exports and the CLI all show
// these rows and this summary; every figure comes from protocol/measure.ts. Rendered as JSON,
// CSV (safe to open in a spreadsheet) or a self-contained HTML page (no script: it prints to PDF
// as is). Pure: no I/O.
import { csvTable } from './csv.js';
import type { Campaign, Report, ReportSummary, ReportVm } from '../../../protocol/console.js';
import { headline, histogram, lostOutside, round } from '../../../protocol/measure.js';

/** Every VM of the campaign as a row: its switch's figures exactly as the agent measured and judged them. */
export function vmLines(c: Campaign): ReportVm[] {
  return c.hosts.flatMap((h) =>
    h.vms.map((v) => {
      const m = v.measurement;
      const w = m?.witness ?? null;
      return {
        host: h.host,
        vm: v.vm,
        state: v.state,
        mode: m?.mode ?? null,
        from: m?.from ?? null,
        to: m?.to ?? null,
        window_us: m ? round(m.window_us, 2) : null,
        passive_gap_us: m ? round(m.passive_gap_us, 1) : null,
        rx_gap_ms: w?.rx?.gap_ms ?? null,
        tx_gap_ms: w?.tx?.gap_ms ?? null,
        break_ms: m ? round(m.break_ms) : null,
        break_basis: m?.break_basis ?? null,
        break_loss_ms: m ? round(m.break_loss_ms) : null,
        lost: m?.lost ?? null,
        lost_basis: m?.lost_basis ?? null,
        delayed: w ? (w.rx?.delayed ?? 0) + (w.tx?.delayed ?? 0) : null,
        dropped: m?.dropped ?? null,
        within_budget: m?.within_budget ?? null,
        decision: v.decision?.decision ?? null,
        by: v.decision?.by ?? null,
        reason: v.decision?.reason ?? null,
      };
    }),
  );
}

export function summarize(c: Campaign): ReportSummary {
  const rowsOf = (h: Campaign['hosts'][number]) => h.vms.flatMap((v) => (v.measurement ? [v.measurement] : []));
  const outside = c.hosts.map((h) => lostOutside(h.loss, rowsOf(h)));
  const lines = vmLines(c);
  const hl = headline(c.hosts.flatMap(rowsOf), outside);
  return {
    campaign: c.id,
    release: c.plan.spec.release,
    state: c.state,
    started: c.started,
    finished: c.finished,
    budget: c.plan.spec.budget,
    hosts: c.hosts.map((h, i) => ({
      host: h.host,
      wave: c.plan.waves[h.wave]?.name ?? String(h.wave),
      before: h.from,
      after: h.state === 'committed' || h.state === 'skipped' ? h.to : h.from,
      state: h.state,
      error: h.error,
      lost: h.loss?.lost ?? null,
      lost_outside: outside[i]!,
    })),
    vms: lines.length,
    moved: lines.filter((l) => l.state === 'moved').length,
    denied: lines.filter((l) => l.state === 'denied').length,
    lost: hl.lost,
    lost_outside: hl.lost_outside,
    lost_from_datapath: hl.lost_from_datapath,
    over_budget: hl.over_budget,
    break_ms: hl.break_ms,
    background_gap_ms: hl.background_gap_ms,
  };
}

export function buildReport(c: Campaign): Report {
  return { summary: summarize(c), vms: vmLines(c), decisions: c.decisions, rollbacks: c.rollbacks };
}

export function renderJson(c: Campaign): string {
  return `${JSON.stringify({ ...buildReport(c), campaign: c }, null, 2)}\n`;
}

const COLS: (keyof ReportVm)[] = ['host', 'vm', 'state', 'mode', 'from', 'to', 'window_us', 'passive_gap_us', 'rx_gap_ms', 'tx_gap_ms', 'break_ms', 'break_basis', 'break_loss_ms', 'lost', 'lost_basis', 'delayed', 'dropped', 'within_budget', 'decision', 'by', 'reason'];

export function renderCsv(c: Campaign): string {
  return csvTable(COLS, vmLines(c).map((l) => COLS.map((k) => l[k])));
}

const esc = (s: unknown) => String(s ?? '').replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
const ms = (x: number | null) => (x === null ? '-' : `${x} ms`);

export function renderHtml(c: Campaign): string {
  const s = summarize(c);
  const lines = vmLines(c);
  const bins = histogram(lines.flatMap((l) => (l.break_ms === null ? [] : [l.break_ms])), s.budget.max_gap_ms);
  const maxN = Math.max(1, ...bins.map((b) => b.count));
  const W = 600;
  const H = 160;
  const top = bins.at(-1)?.hi ?? s.budget.max_gap_ms;
  const bw = bins.length ? W / bins.length : W;
  const bars = bins
    .map((b, i) => {
      const bh = (b.count / maxN) * (H - 20);
      return `<rect x="${(i * bw + 40).toFixed(1)}" y="${(H - bh).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${bh.toFixed(1)}" fill="${b.lo >= s.budget.max_gap_ms ? '#c0392b' : '#2e86c1'}"/>` +
        `<text x="${(i * bw + 40 + bw / 2).toFixed(1)}" y="${(H - bh - 4).toFixed(1)}" font-size="11" text-anchor="middle">${b.count || ''}</text>` +
        `<text x="${(i * bw + 40).toFixed(1)}" y="${H + 14}" font-size="10">${round(b.lo, 2)}</text>`;
    })
    .join('');
  const bx = 40 + (s.budget.max_gap_ms / top) * W;
  const row = (cells: unknown[]) => `<tr>${cells.map((x) => `<td>${esc(x)}</td>`).join('')}</tr>`;
  const basis = [
    ...(s.lost_outside ? [`${s.lost_outside} of them outside every switch window`] : []),
    ...(s.lost_from_datapath ? [`${s.lost_from_datapath} VM${s.lost_from_datapath === 1 ? '' : 's'} counted by the datapath alone: no traffic witness on their host`] : []),
  ].join('; ');
  return `<!doctype html><html><head><meta charset="utf-8"><title>Hitless campaign ${esc(c.id)}: upgrade to ${esc(s.release)}</title>
<style>body{font:13px system-ui,sans-serif;margin:24px;color:#111}table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #bbb;padding:3px 7px;text-align:left}th{background:#eee}.bad{color:#c0392b;font-weight:bold}</style></head><body>
<h1>Campaign ${esc(c.id)}: upgrade to ${esc(s.release)}</h1>
<p>State <b>${esc(s.state)}</b>; started ${esc(s.started)}${s.finished ? `, finished ${esc(s.finished)}` : ''}. ${s.moved} of ${s.vms} VMs moved, ${s.denied} denied; frames lost ${s.lost}${basis ? `, ${esc(basis)}` : ''}; ${s.over_budget} over budget.
Break per VM: p50 ${ms(s.break_ms.p50)}, p99 ${ms(s.break_ms.p99)}, max ${ms(s.break_ms.max)}; budget ${s.budget.max_gap_ms} ms and ${s.budget.max_lost} lost frames per VM.
Background receive gaps of the same run (no switch near): ${s.background_gap_ms.n}, p99 ${ms(s.background_gap_ms.p99)}, max ${ms(s.background_gap_ms.max)}.${c.error ? ` <span class="bad">${esc(c.error)}</span>` : ''}</p>
<h2>Hosts</h2><table><tr><th>host</th><th>wave</th><th>before</th><th>after</th><th>state</th><th>problem</th><th>lost over the upgrade</th><th>of which outside every switch</th></tr>${s.hosts.map((x) => row([x.host, x.wave, x.before, x.after, x.state, x.error, x.lost ?? 'not counted', x.lost_outside ?? ''])).join('')}</table>
<h2>Break time per VM (histogram, ms)</h2>
<svg width="${W + 60}" height="${H + 24}"><line x1="40" y1="${H}" x2="${W + 40}" y2="${H}" stroke="#333"/>${bars}<line x1="${bx.toFixed(1)}" x2="${bx.toFixed(1)}" y1="0" y2="${H}" stroke="#c0392b" stroke-dasharray="4"/><text x="${(bx + 4).toFixed(1)}" y="12" font-size="11" fill="#c0392b">budget ${s.budget.max_gap_ms} ms</text></svg>
<h2>Every VM</h2><table><tr>${COLS.map((k) => `<th>${k}</th>`).join('')}</tr>${lines.map((l) => `<tr${l.within_budget === false ? ' class="bad"' : ''}>${COLS.map((k) => `<td>${esc(l[k])}</td>`).join('')}</tr>`).join('')}</table>
<h2>Approvals and denials</h2>${c.decisions.length ? `<table><tr><th>at</th><th>wave</th><th>host</th><th>vm</th><th>decision</th><th>by</th><th>reason</th></tr>${c.decisions.map((d) => row([d.at, d.wave_name, d.host ?? '(whole wave)', d.vm ?? '', d.decision, d.by, d.reason])).join('')}</table>` : '<p>None: the VMs moved within the budget without asking.</p>'}
<h2>Rollbacks</h2>${c.rollbacks.length ? `<table><tr><th>at</th><th>by</th><th>scope</th><th>result</th></tr>${c.rollbacks.map((r) => row([r.at, r.by, r.scope, r.result])).join('')}</table>` : '<p>None.</p>'}
</body></html>
`;
}
