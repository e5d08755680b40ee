// Reports: one campaign's outcome as the core computes it (report/get, the very figures the
// exports contain) — releases before/after per host, VMs moved and denied, frames lost, VMs over
// budget, break p50/p99/max beside the budget, every VM's switch, a histogram of break times with
// the budget line, who approved or denied what (VMs and whole waves) and why, rollbacks — and its
// export (HTML, CSV, JSON, PDF) through the core. Refetched whenever the campaign changes.
import { useQuery } from '@tanstack/react-query';
import { api, type Campaign, type Report } from '../../../../protocol/console.js';
import { downloadExport } from '../download.js';
import { fmtDateTime, fmtFrames, fmtLimitMs, fmtMs, fmtUs, orDash } from '../format.js';
import { navigate, useAction, useReportQueryError } from '../hooks.js';
import { campaignKeys, reportKeys } from '../queries.js';
import { histogram, type Bin } from '../../../../protocol/measure.js';
import { routeHref } from '../route.js';
import { BudgetText, DecisionTable, Empty, Field, StateTag } from '../ui.js';
import { defaultCampaign } from './Campaigns.js';

/** Break-time histogram as plain SVG elements: bins in ms, bar labels, the budget as a line. */
function Histogram({ bins, budgetMs }: { bins: Bin[]; budgetMs: number }) {
  const W = 640;
  const H = 200;
  const pad = { l: 36, r: 12, t: 14, b: 34 };
  const last = bins.at(-1);
  if (!last) return <Empty>no switch measured yet</Empty>;
  const xMax = last.hi;
  const yMax = Math.max(1, ...bins.map((b) => b.count));
  const x = (v: number) => pad.l + (v / xMax) * (W - pad.l - pad.r);
  const y = (c: number) => H - pad.b - (c / yMax) * (H - pad.t - pad.b);
  const every = Math.ceil(bins.length / 10);
  const bx = x(Math.min(budgetMs, xMax));
  return (
    <svg className="histogram" width={W} height={H} viewBox={`0 0 ${W} ${H}`} data-testid="report-histogram" role="img" aria-label="break time per VM, histogram">
      <line x1={pad.l} y1={H - pad.b} x2={W - pad.r} y2={H - pad.b} className="axis" />
      <line x1={pad.l} y1={pad.t} x2={pad.l} y2={H - pad.b} className="axis" />
      {bins.map((b, i) => (
        <g key={b.lo}>
          <rect x={x(b.lo) + 1} y={y(b.count)} width={Math.max(1, x(b.hi) - x(b.lo) - 2)} height={H - pad.b - y(b.count)} className={b.lo >= budgetMs ? 'bar over' : 'bar'}>
            <title>{`${fmtMs(b.lo)} – ${fmtMs(b.hi)}: ${b.count} VMs`}</title>
          </rect>
          {b.count > 0 ? (
            <text x={(x(b.lo) + x(b.hi)) / 2} y={y(b.count) - 3} className="bar-label" textAnchor="middle">
              {b.count}
            </text>
          ) : null}
          {i % every === 0 ? (
            <text x={x(b.lo)} y={H - pad.b + 14} className="tick" textAnchor="middle">
              {+b.lo.toFixed(3)}
            </text>
          ) : null}
        </g>
      ))}
      <text x={x(xMax)} y={H - pad.b + 14} className="tick" textAnchor="end">
        {+xMax.toFixed(3)}
      </text>
      <text x={(W + pad.l) / 2} y={H - 4} className="tick" textAnchor="middle">
        break per VM (ms)
      </text>
      <text x={4} y={pad.t} className="tick">
        VMs
      </text>
      <line x1={bx} y1={pad.t} x2={bx} y2={H - pad.b} className="budget-line" />
      <text x={bx > W - 90 ? bx - 3 : bx + 3} y={pad.t + 8} className="budget-label" textAnchor={bx > W - 90 ? 'end' : 'start'}>
        budget {fmtMs(budgetMs)}
      </text>
    </svg>
  );
}

/** A figure beside the budget, red when over it; a dash when nothing was measured. */
function VsBudget({ v, budgetMs, testid }: { v: number | null; budgetMs: number; testid: string }) {
  return (
    <td className={v === null ? 'muted' : v > budgetMs ? 'bad' : 'good'} data-testid={testid}>
      {fmtMs(v)} <span className="muted">/ {fmtLimitMs(budgetMs)}</span>
    </td>
  );
}

function ReportBody({ c, r }: { c: Campaign; r: Report }) {
  const s = r.summary;
  const budgetMs = s.budget.max_gap_ms;
  const gaps = r.vms.flatMap((v) => (v.break_ms === null ? [] : [v.break_ms]));
  const approval = c.plan.spec.approval;
  return (
    <>
      <table className="grid compact summary" data-testid="report-summary">
        <tbody>
          <tr>
            <th>VMs moved</th>
            <td data-testid="report-upgraded">
              {s.moved} of {s.vms}
            </td>
            <th>denied</th>
            <td data-testid="report-denied" className={s.denied > 0 ? 'warn' : undefined}>
              {s.denied}
            </td>
            <th>frames lost</th>
            <td data-testid="report-lost" className={s.lost > 0 ? 'bad' : 'good'} title={s.lost_from_datapath ? `${s.lost_from_datapath} VMs counted by the datapath (no traffic witness)` : 'counted by the traffic witness'}>
              {fmtFrames(s.lost)}
              {s.lost_outside > 0 && <span data-testid="report-lost-outside"> ({fmtFrames(s.lost_outside)} outside every switch window)</span>}
            </td>
          </tr>
          <tr>
            <th>break p50</th>
            <VsBudget v={s.break_ms.p50} budgetMs={budgetMs} testid="report-p50" />
            <th>break p99</th>
            <VsBudget v={s.break_ms.p99} budgetMs={budgetMs} testid="report-p99" />
            <th>break max</th>
            <VsBudget v={s.break_ms.max} budgetMs={budgetMs} testid="report-max" />
          </tr>
          <tr>
            <th>over budget</th>
            <td data-testid="report-over-budget" className={s.over_budget ? 'bad' : 'good'}>
              {s.over_budget} of {gaps.length} measured
            </td>
            <th>budget</th>
            <td>
              <BudgetText budget={s.budget} />
            </td>
            <th>approval</th>
            <td>{approval}</td>
          </tr>
          <tr>
            <th>background gaps</th>
            <td colSpan={5} data-testid="report-background" className="muted">
              {s.background_gap_ms.n} receive gaps of the same run touched no switch: p99 {fmtMs(s.background_gap_ms.p99)}, max {fmtMs(s.background_gap_ms.max)}
            </td>
          </tr>
        </tbody>
      </table>

      <h4>Releases per host</h4>
      <table className="grid compact" data-testid="report-hosts">
        <thead>
          <tr>
            <th>host</th>
            <th>wave</th>
            <th>before</th>
            <th>after</th>
            <th>state</th>
            <th>VMs moved</th>
            <th title="what its VMs lost from its prepare to its commit or rollback, by the traffic witness">lost over the upgrade</th>
            <th title="of those, what none of its VMs' switches counts">outside the switches</th>
            <th>error</th>
          </tr>
        </thead>
        <tbody>
          {s.hosts.map((h) => {
            const vms = r.vms.filter((v) => v.host === h.host);
            return (
              <tr key={h.host} data-testid={`report-host-${h.host}`}>
                <td>{h.host}</td>
                <td>{h.wave}</td>
                <td>{orDash(h.before)}</td>
                <td>{orDash(h.after)}</td>
                <td>
                  <StateTag state={h.state} />
                </td>
                <td className="num">
                  {vms.filter((v) => v.state === 'moved').length} / {vms.length}
                </td>
                <td className="num" data-testid="report-host-lost" title={h.lost === null ? 'not counted: no traffic witness, or the upgrade has not ended' : undefined}>
                  {h.lost === null ? '—' : fmtFrames(h.lost)}
                </td>
                <td className={`num ${h.lost_outside ? 'bad' : ''}`}>{h.lost_outside === null ? '—' : fmtFrames(h.lost_outside)}</td>
                <td className={h.error ? 'bad' : 'muted'}>{orDash(h.error)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>

      <h4>Break time per VM</h4>
      <Histogram bins={histogram(gaps, budgetMs)} budgetMs={budgetMs} />
      <table className="grid compact" data-testid="report-breaks">
        <thead>
          <tr>
            <th>host</th>
            <th>VM</th>
            <th>state</th>
            <th>mode</th>
            <th>from</th>
            <th>to</th>
            <th>window (keeper / loop)</th>
            <th>datapath gap</th>
            <th>gap to / from VM</th>
            <th>break</th>
            <th>lost</th>
            <th>delayed</th>
            <th>datapath drops</th>
            <th>within budget</th>
            <th>decision</th>
          </tr>
        </thead>
        <tbody>
          {r.vms.map((v) => {
            const cls = v.within_budget === null ? undefined : v.within_budget ? 'good' : 'bad';
            return (
              <tr key={`${v.host}/${v.vm}`} data-testid={`report-vm-${v.host}-${v.vm}`}>
                <td>{v.host}</td>
                <td className="mono">{v.vm}</td>
                <td>
                  <StateTag state={v.state} />
                </td>
                <td>{orDash(v.mode)}</td>
                <td className="mono">{orDash(v.from)}</td>
                <td className="mono">{orDash(v.to)}</td>
                <td className="num">{fmtUs(v.window_us)}</td>
                <td className="num">{fmtUs(v.passive_gap_us)}</td>
                <td className="num">
                  {fmtMs(v.rx_gap_ms)} / {fmtMs(v.tx_gap_ms)}
                </td>
                <td className={`num ${cls ?? ''}`} title={v.break_basis ?? undefined}>
                  {fmtMs(v.break_ms)}
                </td>
                <td className={`num ${v.lost !== null && v.lost > s.budget.max_lost ? 'bad' : ''}`} title={v.lost_basis ?? undefined}>
                  {fmtFrames(v.lost)}
                </td>
                <td className="num">{fmtFrames(v.delayed)}</td>
                <td className="num">{fmtFrames(v.dropped)}</td>
                <td className={cls}>{v.within_budget === null ? '—' : v.within_budget ? 'yes' : 'NO'}</td>
                <td>
                  {v.decision ? (
                    `${v.decision} by ${orDash(v.by)}: ${orDash(v.reason)}`
                  ) : (
                    <span className="muted">{v.break_ms === null ? '—' : approval === 'each-vm' ? '—' : `${approval} (no VM decision)`}</span>
                  )}
                </td>
              </tr>
            );
          })}
          {r.vms.length === 0 ? (
            <tr>
              <td colSpan={15} className="muted">
                no VMs in this campaign
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>

      <h4>Approvals and denials</h4>
      {r.decisions.length === 0 ? (
        <Empty>none recorded{approval === 'auto' ? ' (auto mode: the budget decided)' : ''}</Empty>
      ) : (
        <DecisionTable decisions={r.decisions} testid="report-decisions" />
      )}

      <h4>Rollbacks</h4>
      {r.rollbacks.length === 0 ? (
        <Empty>none</Empty>
      ) : (
        <table className="grid compact" data-testid="report-rollbacks">
          <thead>
            <tr>
              <th>at</th>
              <th>by</th>
              <th>scope</th>
              <th>result</th>
            </tr>
          </thead>
          <tbody>
            {r.rollbacks.map((x, i) => (
              <tr key={`${i}-${x.at}`}>
                <td>{fmtDateTime(x.at)}</td>
                <td>{x.by}</td>
                <td>{x.scope}</td>
                <td>{x.result}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

function CampaignReport({ c }: { c: Campaign }) {
  const q = useQuery(reportKeys.get(c.id));
  useReportQueryError(q, 'report/get');
  const exp = useAction(api.reportExport, (x) => downloadExport(x));
  const s = q.data?.summary;
  return (
    <div data-testid="report">
      <div className="toolbar">
        <h3>
          Campaign <span className="mono">{c.id}</span> → {s?.release ?? c.plan.spec.release}
        </h3>
        <StateTag state={s?.state ?? c.state} />
        <span className="muted">
          {fmtDateTime(s?.started ?? c.started)} – {fmtDateTime(s ? s.finished : c.finished)}
        </span>
        <span className="spacer" />
        {(['html', 'csv', 'json', 'pdf'] as const).map((f) => (
          <button key={f} type="button" className="small" data-testid={`export-${f}`} disabled={exp.isPending} onClick={() => exp.mutate({ campaign: c.id, format: f })}>
            {f.toUpperCase()}
          </button>
        ))}
      </div>
      {q.data ? <ReportBody c={c} r={q.data} /> : <Empty>{q.isError ? 'the report could not be computed (see the error line)' : 'loading the report…'}</Empty>}
    </div>
  );
}

export function Reports({ id }: { id: string | null }) {
  const q = useQuery(campaignKeys.list());
  useReportQueryError(q, 'campaign/list');
  const list = [...(q.data ?? [])].sort((a, b) => b.started.localeCompare(a.started));
  const chosen = id ? list.find((c) => c.id === id) : defaultCampaign(list);
  return (
    <section data-testid="reports">
      <div className="toolbar">
        <h2>Reports</h2>
        <Field label="Campaign">
          <select data-testid="report-campaign" value={chosen?.id ?? ''} onChange={(e) => navigate(routeHref('reports', e.target.value))}>
            {list.length === 0 ? <option value="">no campaigns</option> : null}
            {list.map((c) => (
              <option key={c.id} value={c.id}>
                {c.id} → {c.plan.spec.release} ({c.state}, {fmtDateTime(c.started)})
              </option>
            ))}
          </select>
        </Field>
      </div>
      {chosen ? <CampaignReport key={chosen.id} c={chosen} /> : <Empty>{q.isPending ? 'loading…' : id ? `no campaign ${id}` : 'no campaigns yet'}</Empty>}
    </section>
  );
}
