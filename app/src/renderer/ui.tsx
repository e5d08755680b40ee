// Shared pieces of the screens: the error line, sortable/filterable tables, an in-page confirm
// (no window.confirm: it blocks and test drivers dismiss it), measured-vs-budget cells.
import { useMemo, useState, type ReactNode } from 'react';
import type { CampaignDecision } from '../../../protocol/console.js';
import type { Budget } from '../../../protocol/measure.js';
import { clearError, useShownError } from './errors.js';
import { fmtDateTime, fmtFrames, fmtLimitMs, fmtMs, fmtTime, orDash } from './format.js';
import { filterRows, nextSort, sortRows, type Column, type SortState } from './tableSort.js';

export function ErrorLine() {
  const e = useShownError();
  if (!e) return null;
  const text = e.message.startsWith(e.what) ? e.message : `${e.what}: ${e.message}`;
  return (
    <div className="error-line" role="alert">
      <span data-testid="error">{text}</span>
      <span className="muted"> at {fmtTime(new Date(e.at).toISOString())}</span>
      <button type="button" className="small" data-testid="error-dismiss" onClick={() => clearError()}>
        dismiss
      </button>
    </div>
  );
}

export interface Table<T> {
  rows: T[];
  total: number;
  filter: string;
  setFilter: (s: string) => void;
  /** a sortable header cell */
  th: (key: string, label: ReactNode, title?: string) => ReactNode;
}

/** Sort and filter state for one table; the screen renders `th()` headers and `rows`. */
export function useTable<T>(all: readonly T[], columns: readonly Column<T>[], initial: SortState | null): Table<T> {
  const [sort, setSort] = useState<SortState | null>(initial);
  const [filter, setFilter] = useState('');
  const rows = useMemo(() => sortRows(filterRows(all, columns, filter), columns, sort), [all, columns, filter, sort]);
  const th = (key: string, label: ReactNode, title?: string) => {
    const dir = sort && sort.key === key ? sort.dir : null;
    return (
      <th
        key={key}
        className="sortable"
        title={title ?? 'click to sort'}
        data-testid={`sort-${key}`}
        aria-sort={dir === 'asc' ? 'ascending' : dir === 'desc' ? 'descending' : 'none'}
        onClick={() => setSort(nextSort(sort, key))}
      >
        {label}
        <span className="sort-mark">{dir === 'asc' ? ' ▲' : dir === 'desc' ? ' ▼' : ''}</span>
      </th>
    );
  };
  return { rows, total: all.length, filter, setFilter, th };
}

/** A button that asks "sure?" in place before acting. Test ids: <testid>, <testid>-yes, <testid>-no. */
export function ConfirmButton(props: {
  testid: string;
  label: string;
  question: string;
  onConfirm: () => void;
  disabled?: boolean;
  className?: string;
}) {
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <button type="button" className={props.className} data-testid={props.testid} disabled={props.disabled} onClick={() => setAsking(true)}>
        {props.label}
      </button>
    );
  return (
    <span className="confirm">
      <span className="confirm-q">{props.question}</span>
      <button
        type="button"
        className="danger small"
        data-testid={`${props.testid}-yes`}
        onClick={() => {
          setAsking(false);
          props.onConfirm();
        }}
      >
        yes, {props.label.toLowerCase()}
      </button>
      <button type="button" className="small" data-testid={`${props.testid}-no`} onClick={() => setAsking(false)}>
        cancel
      </button>
    </span>
  );
}

/** A measured break beside its budget: "0.42 ms / 10 ms", red when over. */
export function GapVsBudget({ gap, budget, within }: { gap: number | null; budget: Budget | null; within?: boolean | null }) {
  if (gap === null) return <span className="muted">—</span>;
  const over = within === false || (within == null && budget !== null && gap > budget.max_gap_ms);
  return (
    <span className={over ? 'bad' : budget ? 'good' : undefined}>
      {fmtMs(gap)}
      {budget ? <span className="muted"> / {fmtLimitMs(budget.max_gap_ms)}</span> : null}
    </span>
  );
}

/** Frames a VM lost in its switch (protocol/measure.ts lost) beside the budget. */
export function LostVsBudget({ lost, budget }: { lost: number | null; budget: Budget | null }) {
  if (lost === null) return <span className="muted">—</span>;
  const over = budget !== null && lost > budget.max_lost;
  return (
    <span className={over ? 'bad' : budget ? 'good' : undefined}>
      {fmtFrames(lost)}
      {budget ? <span className="muted"> / {budget.max_lost}</span> : null}
    </span>
  );
}

export function BudgetText({ budget }: { budget: Budget }) {
  return (
    <span>
      ≤ {fmtLimitMs(budget.max_gap_ms)} and ≤ {fmtFrames(budget.max_lost)} lost per VM
    </span>
  );
}

export function Field({ label, children, hint }: { label: string; children: ReactNode; hint?: string }) {
  return (
    <label className="field">
      <span className="field-label">{label}</span>
      {children}
      {hint ? <span className="muted field-hint">{hint}</span> : null}
    </label>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty muted">{children}</div>;
}

/** A colored state word (classes in app.css by state name). */
export function StateTag({ state }: { state: string | null }) {
  if (!state) return <span className="muted">—</span>;
  return <span className={`tag st-${state}`}>{state}</span>;
}

/** Every operator decision of a campaign (VMs and whole waves): when, what, who, why. */
export function DecisionTable({ decisions, testid }: { decisions: readonly CampaignDecision[]; testid: string }) {
  return (
    <table className="grid compact" data-testid={testid}>
      <thead>
        <tr>
          <th>at</th>
          <th>kind</th>
          <th>wave</th>
          <th>host / VM</th>
          <th>decision</th>
          <th>by</th>
          <th>reason</th>
        </tr>
      </thead>
      <tbody>
        {decisions.map((d, i) => (
          <tr key={`${i}-${d.at}`} data-testid={`${testid}-${i}`}>
            <td title={d.at}>{fmtDateTime(d.at)}</td>
            <td>{d.kind}</td>
            <td>
              {d.wave + 1}: {d.wave_name}
            </td>
            <td className={d.kind === 'vm' ? 'mono' : undefined}>{d.kind === 'wave' ? <span className="muted">whole wave</span> : `${orDash(d.host)} / ${orDash(d.vm)}`}</td>
            <td className={d.decision === 'deny' ? 'bad' : 'good'}>{d.decision}</td>
            <td>{d.by}</td>
            <td>{d.reason}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Export as JSON and as CSV: two buttons, <testid>-json and <testid>-csv. */
export function ExportButtons({ testid, pending, onExport }: { testid: string; pending: boolean; onExport: (format: 'json' | 'csv') => void }) {
  return (
    <>
      <button type="button" className="small" data-testid={`${testid}-json`} disabled={pending} onClick={() => onExport('json')}>
        Export JSON
      </button>
      <button type="button" className="small" data-testid={`${testid}-csv`} disabled={pending} onClick={() => onExport('csv')}>
        Export CSV
      </button>
    </>
  );
}
