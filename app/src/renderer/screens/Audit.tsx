// Audit: the hosts' journals (HostJournals), then every action this console recorded
// (hash-chained), filterable and sortable; verify the chain and export it as JSON or CSV.
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { api, type AuditEntry } from '../../../../protocol/console.js';
import { downloadExport } from '../download.js';
import { fmtDateTime } from '../format.js';
import { useAction, useReportQueryError } from '../hooks.js';
import { auditKeys } from '../queries.js';
import type { Column } from '../tableSort.js';
import { Empty, ExportButtons, Field, useTable } from '../ui.js';
import { HostJournals } from './HostJournals.js';

const compact = (d: Record<string, unknown>) => JSON.stringify(d);

const columns: readonly Column<AuditEntry>[] = [
  { key: 'seq', sortValue: (e) => e.seq },
  { key: 'at', sortValue: (e) => e.at, filterText: (e) => `${e.at} ${fmtDateTime(e.at)}` },
  { key: 'actor', sortValue: (e) => e.actor },
  { key: 'action', sortValue: (e) => e.action },
  { key: 'detail', sortValue: (e) => compact(e.detail) },
  { key: 'hash', sortValue: (e) => e.hash },
];

export function Audit() {
  const [limit, setLimit] = useState(500);
  const q = useQuery(auditKeys.list(limit));
  useReportQueryError(q, 'audit/list');
  const t = useTable(q.data ?? [], columns, { key: 'seq', dir: 'desc' });
  const verify = useAction(api.auditVerify);
  const exp = useAction(api.auditExport, (x) => downloadExport(x));
  const v = verify.data;
  return (
    <section data-testid="audit">
      <div className="toolbar">
        <h2>Audit</h2>
        <input type="search" className="filter" data-testid="audit-filter" placeholder="filter: text, or column:value (actor:alice)" value={t.filter} onChange={(e) => t.setFilter(e.target.value)} />
        <Field label="Last">
          <select data-testid="audit-limit" value={limit} onChange={(e) => setLimit(Number(e.target.value))}>
            {[100, 500, 2000, 10000].map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </Field>
        <span className="muted">
          {t.rows.length} of {t.total} entries
        </span>
        <button type="button" className="small" onClick={() => void q.refetch()} data-testid="audit-refresh">
          Refresh
        </button>
        <span className="spacer" />
        <button type="button" data-testid="audit-verify" disabled={verify.isPending} onClick={() => verify.mutate({})}>
          {verify.isPending ? 'Verifying…' : 'Verify chain'}
        </button>
        {v ? (
          <span data-testid="audit-result" className={v.ok ? 'good' : 'bad'}>
            {v.ok ? `chain intact: ${v.entries} entries` : `BROKEN at seq ${v.broken_at ?? '?'}: ${v.reason ?? 'no reason given'}`}
          </span>
        ) : null}
        <ExportButtons testid="audit-export" pending={exp.isPending} onExport={(format) => exp.mutate({ format })} />
      </div>
      <HostJournals />
      <h3>This console's log</h3>
      {q.isPending ? (
        <Empty>loading…</Empty>
      ) : (
        <table className="grid" data-testid="audit-table">
          <thead>
            <tr>
              {t.th('seq', 'seq')}
              {t.th('at', 'at')}
              {t.th('actor', 'actor')}
              {t.th('action', 'action')}
              {t.th('detail', 'detail')}
              {t.th('hash', 'hash')}
            </tr>
          </thead>
          <tbody>
            {t.rows.map((e) => (
              <tr key={e.seq} data-testid={`audit-row-${e.seq}`} className={v && !v.ok && v.broken_at === e.seq ? 'row-problem' : undefined}>
                <td className="num">{e.seq}</td>
                <td title={e.at}>{fmtDateTime(e.at)}</td>
                <td>{e.actor}</td>
                <td className="mono">{e.action}</td>
                <td className="mono detail" title={JSON.stringify(e.detail, null, 2)}>
                  {compact(e.detail)}
                </td>
                <td className="mono" title={`${e.hash}\nprev ${e.prev}`}>
                  {e.hash.slice(0, 12)}
                </td>
              </tr>
            ))}
            {t.rows.length === 0 ? (
              <tr>
                <td colSpan={6} className="muted">
                  {t.total === 0 ? 'no entries' : 'no entry matches the filter'}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      )}
    </section>
  );
}
