// Fleet: every host in one sortable, filterable table, with its connection in words (and what
// the operator can do about it: accept or reject an unknown host key, retry now), its releases,
// upgrade state, VMs, health and last measured break; hosts selected in it get a release or the
// agent installed together (HostPackages.tsx).
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, type HostRow } from '../../../../protocol/console.js';
import { fmtMs, fmtTime, orDash } from '../format.js';
import { useAction, useNow, useReportQueryError } from '../hooks.js';
import { fleetKeys, removeHost, upsertHost } from '../queries.js';
import { routeHref } from '../route.js';
import type { Column } from '../tableSort.js';
import { ConfirmButton, Empty, StateTag, useTable } from '../ui.js';
import { AddHostForm, ImportForm } from './FleetForms.js';
import { AgentInstall, ReleaseUpload } from './HostPackages.js';

const connWords: Record<HostRow['conn'], string> = {
  connected: 'connected',
  connecting: 'connecting',
  unreachable: 'unreachable',
  'hostkey-unknown': 'host key unknown',
  'hostkey-changed': 'host key CHANGED',
  disconnected: 'disconnected',
};

const columns: readonly Column<HostRow>[] = [
  { key: 'name', sortValue: (h) => h.name },
  { key: 'address', sortValue: (h) => h.address },
  { key: 'group', sortValue: (h) => h.group },
  { key: 'conn', sortValue: (h) => h.conn, filterText: (h) => `${connWords[h.conn]} ${h.conn} ${h.problem ?? ''} ${h.pending_key?.fingerprint ?? ''}` },
  { key: 'agent', sortValue: (h) => h.agent_version },
  { key: 'release', sortValue: (h) => h.active?.release, filterText: (h) => `${h.active?.release ?? ''} ${h.target?.release ?? ''}` },
  { key: 'state', sortValue: (h) => h.state, filterText: (h) => `${h.state ?? ''} ${h.exposed ? 'exposed' : ''} ${h.error ?? ''}` },
  { key: 'vms', sortValue: (h) => h.vms.length, filterText: (h) => h.vms.map((v) => v.vm).join(' ') },
  { key: 'health', sortValue: (h) => (h.health ? h.health.problems.length : null), filterText: (h) => (h.health ? (h.health.ok ? 'ok' : h.health.problems.join(' ')) : '') },
  { key: 'break', sortValue: (h) => h.last_break_ms },
  { key: 'campaign', sortValue: (h) => h.campaign },
];

/** Seconds until the core retries an unreachable host: next_retry_ms counts from the snapshot,
 * which arrived at snapshotAt (the fleet list's last update). */
function retryIn(h: HostRow, snapshotAt: number, now: number): number | null {
  if (h.next_retry_ms === null) return null;
  return Math.max(0, Math.ceil((snapshotAt + h.next_retry_ms - now) / 1000));
}

function ConnCell({ h, snapshotAt }: { h: HostRow; snapshotAt: number }) {
  const qc = useQueryClient();
  const now = useNow(1000);
  const decide = useAction(api.hostKeyDecide, (row) => upsertHost(qc, row));
  const retry = useAction(api.hostConnect, (row) => upsertHost(qc, row));
  const cls = h.conn === 'connected' ? 'good' : h.conn === 'connecting' ? 'warn' : 'bad';
  const secs = retryIn(h, snapshotAt, now);
  return (
    <td data-testid={`host-conn-${h.name}`} className="conn-cell">
      <span className={cls}>{connWords[h.conn]}</span>
      {h.problem ? <span className="problem">: {h.problem}</span> : null}
      {h.conn === 'hostkey-unknown' && h.pending_key ? (
        <div className="key-prompt">
          <span className="mono">
            {h.pending_key.type} {h.pending_key.fingerprint}
          </span>
          <button
            type="button"
            className="small"
            data-testid={`key-accept-${h.name}`}
            disabled={decide.isPending}
            onClick={() => decide.mutate({ name: h.name, fingerprint: h.pending_key!.fingerprint, accept: true })}
          >
            Accept
          </button>
          <button
            type="button"
            className="small danger"
            data-testid={`key-reject-${h.name}`}
            disabled={decide.isPending}
            onClick={() => decide.mutate({ name: h.name, fingerprint: h.pending_key!.fingerprint, accept: false })}
          >
            Reject
          </button>
        </div>
      ) : null}
      {h.conn === 'hostkey-changed' ? <div className="bad small-text">refused until known_hosts is corrected by hand</div> : null}
      {h.conn === 'unreachable' || h.conn === 'disconnected' ? (
        <div>
          {secs !== null ? <span className="muted">next retry in {secs} s </span> : null}
          <button type="button" className="small" data-testid={`host-retry-${h.name}`} disabled={retry.isPending} onClick={() => retry.mutate({ name: h.name })}>
            {retry.isPending ? 'Retrying…' : 'Retry now'}
          </button>
        </div>
      ) : null}
    </td>
  );
}

function HostTr({ h, snapshotAt, selected, onSelect }: { h: HostRow; snapshotAt: number; selected: boolean; onSelect: (on: boolean) => void }) {
  const qc = useQueryClient();
  const remove = useAction(api.fleetRemove, (_r, p) => removeHost(qc, p.name));
  const health = h.health;
  return (
    <tr data-testid={`host-row-${h.name}`} className={h.conn === 'connected' ? undefined : 'row-problem'}>
      <td>
        <input type="checkbox" aria-label={`select ${h.name}`} data-testid={`host-select-${h.name}`} checked={selected} onChange={(e) => onSelect(e.target.checked)} />
      </td>
      <td>
        <a href={routeHref('host', h.name)} data-testid={`host-link-${h.name}`}>
          {h.name}
        </a>
      </td>
      <td className="mono">{h.address}</td>
      <td>{orDash(h.group)}</td>
      <ConnCell h={h} snapshotAt={snapshotAt} />
      <td>{orDash(h.agent_version)}</td>
      <td>
        {h.active ? `${h.active.release} (${h.active.gen}${h.active.core && h.active.core !== h.active.release ? `, core ${h.active.core}` : ''})` : '—'}
        {h.active?.kind === 'ovs-dpdk' ? <span className="muted" title="stock OVS-DPDK generations behind the keeper"> OVS-DPDK</span> : null}
        {h.target ? <span className="warn"> → {h.target.release} ({h.target.gen})</span> : null}
      </td>
      <td>
        <StateTag state={h.state} />
        {h.exposed ? (
          <div className="bad small-text" data-testid={`host-exposed-${h.name}`} title={h.exposed.why}>
            exposed: no standby since {fmtTime(h.exposed.since)}
          </div>
        ) : null}
        {h.error ? <div className="bad small-text">{h.error}</div> : null}
      </td>
      <td className="num">{h.vms.length}</td>
      <td>
        {health === null ? (
          <span className="muted">—</span>
        ) : health.ok ? (
          <span className="good">ok</span>
        ) : (
          <span className="bad" title={health.problems.join('\n')}>
            {health.problems.join('; ')}
          </span>
        )}
      </td>
      <td className="num">{fmtMs(h.last_break_ms)}</td>
      <td>{h.campaign ? <a href={routeHref('campaign', h.campaign)}>{h.campaign}</a> : '—'}</td>
      <td className="actions">
        <a href={routeHref('live', h.name)} className="small-link">
          live
        </a>
        <ConfirmButton
          testid={`host-remove-${h.name}`}
          className="small"
          label="Remove"
          question={`remove ${h.name} from the fleet?`}
          disabled={remove.isPending}
          onConfirm={() => remove.mutate({ name: h.name })}
        />
      </td>
    </tr>
  );
}

export function Fleet() {
  const q = useQuery(fleetKeys.list());
  useReportQueryError(q, 'fleet/list');
  const t = useTable(q.data ?? [], columns, { key: 'name', dir: 'asc' });
  const [form, setForm] = useState<'none' | 'add' | 'import'>('none');
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const [packages, setPackages] = useState<'none' | 'agent' | 'release'>('none');
  const hosts = q.data ?? [];
  const chosen = hosts.filter((h) => selected.has(h.name));
  const select = (names: string[], on: boolean) =>
    setSelected((old) => {
      const next = new Set(old);
      for (const n of names) if (on) next.add(n);
      else next.delete(n);
      return next;
    });
  const down = hosts.filter((h) => h.conn !== 'connected').length;
  return (
    <section>
      <div className="toolbar">
        <h2>Fleet</h2>
        <input
          type="search"
          data-testid="fleet-filter"
          placeholder="filter: text, or column:value (conn:unreachable)"
          value={t.filter}
          onChange={(e) => t.setFilter(e.target.value)}
          className="filter"
        />
        <span className="muted" data-testid="fleet-count">
          {t.rows.length} of {t.total} hosts{down ? `, ${down} not connected` : ''}
        </span>
        <span className="spacer" />
        <button type="button" data-testid="fleet-install-agent" disabled={chosen.length === 0} onClick={() => setPackages(packages === 'agent' ? 'none' : 'agent')}>
          Install agent{chosen.length ? ` (${chosen.length})` : ''}
        </button>
        <button type="button" data-testid="fleet-upload-release" disabled={chosen.length === 0} onClick={() => setPackages(packages === 'release' ? 'none' : 'release')}>
          Upload release{chosen.length ? ` (${chosen.length})` : ''}
        </button>
        <button type="button" data-testid="fleet-add" onClick={() => setForm(form === 'add' ? 'none' : 'add')}>
          Add host
        </button>
        <button type="button" data-testid="fleet-import" onClick={() => setForm(form === 'import' ? 'none' : 'import')}>
          Import
        </button>
      </div>
      {form === 'add' ? <AddHostForm onDone={() => setForm('none')} /> : null}
      {form === 'import' ? <ImportForm /> : null}
      {packages === 'agent' && chosen.length ? <AgentInstall hosts={chosen} onDone={() => setPackages('none')} /> : null}
      {packages === 'release' && chosen.length ? <ReleaseUpload hosts={chosen} onDone={() => setPackages('none')} /> : null}
      {q.isPending ? (
        <Empty>loading the fleet…</Empty>
      ) : (
        <table className="grid" data-testid="fleet-table">
          <thead>
            <tr>
              <th>
                <input
                  type="checkbox"
                  aria-label="select every host shown"
                  data-testid="fleet-select-all"
                  checked={t.rows.length > 0 && t.rows.every((h) => selected.has(h.name))}
                  onChange={(e) => select(t.rows.map((h) => h.name), e.target.checked)}
                />
              </th>
              {t.th('name', 'Host')}
              {t.th('address', 'Address')}
              {t.th('group', 'Group')}
              {t.th('conn', 'Connection')}
              {t.th('agent', 'Agent')}
              {t.th('release', 'Release (active → target)')}
              {t.th('state', 'State')}
              {t.th('vms', 'VMs')}
              {t.th('health', 'Health')}
              {t.th('break', 'Last break')}
              {t.th('campaign', 'Campaign')}
              <th />
            </tr>
          </thead>
          <tbody>
            {t.rows.map((h) => (
              <HostTr key={h.name} h={h} snapshotAt={q.dataUpdatedAt} selected={selected.has(h.name)} onSelect={(on) => select([h.name], on)} />
            ))}
            {t.rows.length === 0 ? (
              <tr>
                <td colSpan={13} className="muted">
                  {t.total === 0 ? 'no hosts yet: add one or import an ssh config, Ansible inventory or fleet file' : 'no host matches the filter'}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      )}
    </section>
  );
}
