// Approvals: the queue of switches (or waves) waiting for a person, each with what it moves and
// what the campaign measured so far (canary, previous VM) beside the budget. A reason is required
// for approve and deny alike. Keyboard: j/k or arrows select, a approves, d denies, Enter in the
// reason box approves.
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { api, type Approval } from '../../../../protocol/console.js';
import { fmtFrames, fmtMs, fmtTime, orDash } from '../format.js';
import { useAction, useNow, useReportQueryError } from '../hooks.js';
import { approvalKeys, sessionKeys } from '../queries.js';
import { routeHref } from '../route.js';
import { BudgetText, LostVsBudget, Empty, GapVsBudget } from '../ui.js';
import { fmtBreak } from '../format.js';

const rowName = (a: Approval) =>
  a.kind === 'vm' && a.vm ? a.vm : a.kind === 'host' ? `${a.host ?? ''}: all VMs (swap)` : a.kind === 'keeper' ? `${a.host ?? ''}: keeper ${a.keeper?.to ?? ''}` : a.wave_name;
/** Row test id: approval-<host>-<vm> for a VM (VM names repeat across hosts), approval-host-<host>
 * for a host's stage swap, approval-keeper-<host> for its keeper step, approval-wave-<index> for
 * a wave. */
const rowTestId = (a: Approval) =>
  a.kind === 'vm' ? `approval-${a.host ?? ''}-${a.vm ?? ''}` : a.kind === 'host' ? `approval-host-${a.host ?? ''}` : a.kind === 'keeper' ? `approval-keeper-${a.host ?? ''}` : `approval-wave-${a.wave}`;

function ago(iso: string, now: number): string {
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return '';
  const s = Math.max(0, Math.round((now - t) / 1000));
  return s < 120 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}

function Context({ a }: { a: Approval }) {
  return (
    <div className="context" data-testid="approval-context">
      <h3>
        {a.kind === 'vm' ? (
          <>
            Move VM <span className="mono">{a.vm}</span> on <a href={routeHref('host', a.host ?? '')}>{a.host}</a> to {a.release}
          </>
        ) : a.kind === 'host' ? (
          <>
            Swap the forwarding stage of <a href={routeHref('host', a.host ?? '')}>{a.host}</a> to {a.release}, in place: its {a.moves[0]?.vms.length ?? 0} VMs
            move at once
          </>
        ) : a.kind === 'keeper' ? (
          <>
            Replace the keeper of <a href={routeHref('host', a.host ?? '')}>{a.host}</a> ({a.keeper?.from} by the installed {a.keeper?.to}) before its VMs move to {a.release}: its{' '}
            {a.moves[0]?.vms.length ?? 0} VMs keep forwarding; their control messages wait for the handover
          </>
        ) : (
          <>
            Start wave {a.wave + 1} ({a.wave_name}) to {a.release}
          </>
        )}
      </h3>
      <div className="kv">
        <span>
          campaign <a href={routeHref('campaign', a.campaign)}>{a.campaign}</a>
        </span>
        <span>
          wave {a.wave + 1}: {a.wave_name}
        </span>
        <span>
          budget: <BudgetText budget={a.budget} />
        </span>
        <span data-testid="approval-predicted">
          {a.kind === 'keeper' && a.keeper ? (
            <>
              expected control pause: {fmtBreak(a.keeper.predicted_pause_us)} ({a.keeper.basis}); no frame passes through the keeper
            </>
          ) : (
            <>
              mode: {a.mode === 'swap' ? 'in-place stage swap' : 'handoff'}, expected break per VM: {fmtBreak(a.predicted_break_us)}
            </>
          )}
        </span>
      </div>
      <table className="grid compact">
        <tbody>
          <tr>
            <th>canary</th>
            <td>
              {a.canary ? (
                <>
                  {a.canary.host}: {a.canary.vms} VMs, max gap <GapVsBudget gap={a.canary.max_gap_ms} budget={a.budget} />, lost{' '}
                  <LostVsBudget lost={a.canary.lost} budget={a.budget} />
                </>
              ) : (
                <span className="muted">no canary result (no canary, or this is the canary)</span>
              )}
            </td>
          </tr>
          <tr>
            <th>previous VM</th>
            <td>
              {a.previous ? (
                <>
                  <span className="mono">{a.previous.vm}</span> {a.previous.from} → {a.previous.to}: gap{' '}
                  <GapVsBudget gap={a.previous.break_ms} budget={a.budget} within={a.previous.within_budget} />, lost <LostVsBudget lost={a.previous.lost} budget={a.budget} />
                  {a.previous.anomalies.length ? <span className="warn"> anomalies: {a.previous.anomalies.join('; ')}</span> : null}
                </>
              ) : (
                <span className="muted">none yet: this is the first switch</span>
              )}
            </td>
          </tr>
          {a.moves.length > 0 ? (
            <tr>
              <th>moves</th>
              <td>
                {a.moves.map((m) => (
                  <div key={m.host}>
                    {m.host}: <span className="mono">{m.vms.join(', ')}</span>
                  </div>
                ))}
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
    </div>
  );
}

export function Approvals() {
  const qc = useQueryClient();
  const q = useQuery(approvalKeys.list());
  const session = useQuery(sessionKeys.info());
  useReportQueryError(q, 'approval/list');
  const now = useNow(1000);
  const list = q.data ?? [];
  const [selId, setSelId] = useState<string | null>(null);
  const [reason, setReason] = useState('');
  const reasonRef = useRef<HTMLInputElement>(null);
  const mayApprove = session.data?.may_approve ?? false;

  const selIndex = Math.max(0, list.findIndex((a) => a.id === selId));
  const sel = list[selIndex];

  const decide = useAction(api.approvalDecide, (_r, p) => {
    const i = list.findIndex((a) => a.id === p.id);
    const rest = list.filter((a) => a.id !== p.id);
    qc.setQueryData(approvalKeys.list().queryKey, (old) => old?.filter((a) => a.id !== p.id));
    setSelId(rest[Math.min(i, rest.length - 1)]?.id ?? null);
    setReason('');
  });

  const act = (decision: 'approve' | 'deny') => {
    if (!sel || !mayApprove || decide.isPending) return;
    if (reason.trim() === '') reasonRef.current?.focus();
    decide.mutate({ id: sel.id, decision, reason });
  };

  // keyboard: only when the focus is not in a text field (the reason box handles its own Enter)
  const keys = useRef({ act, list, selIndex });
  keys.current = { act, list, selIndex };
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT')) return;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const { act, list, selIndex } = keys.current;
      const move = (d: number) => {
        const next = list[Math.min(list.length - 1, Math.max(0, selIndex + d))];
        if (next) setSelId(next.id);
      };
      if (e.key === 'j' || e.key === 'ArrowDown') move(1);
      else if (e.key === 'k' || e.key === 'ArrowUp') move(-1);
      else if (e.key === 'a') act('approve');
      else if (e.key === 'd') act('deny');
      else return;
      e.preventDefault();
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, []);

  return (
    <section data-testid="approvals">
      <div className="toolbar">
        <h2>Approvals</h2>
        <span className="muted" data-testid="approvals-count">
          {list.length} pending
        </span>
        <span className="muted small-text">keys: j/k or ↓/↑ select · a approve · d deny · Enter in the reason box approves</span>
      </div>
      {!mayApprove && session.data ? (
        <div className="warn" data-testid="approvals-readonly">
          {session.data.operator} may not approve: Approve and Deny are disabled for this session
        </div>
      ) : null}
      {list.length === 0 ? (
        <Empty>{q.isPending ? 'loading…' : 'nothing waits for approval'}</Empty>
      ) : (
        <table className="grid" data-testid="approval-table">
          <thead>
            <tr>
              <th>kind</th>
              <th>VM / wave</th>
              <th>host</th>
              <th>wave</th>
              <th>release</th>
              <th>budget</th>
              <th>canary: max gap</th>
              <th>canary: lost</th>
              <th>canary: VMs</th>
              <th>previous: gap</th>
              <th>previous: lost</th>
              <th>asked</th>
            </tr>
          </thead>
          <tbody>
            {list.map((a, i) => (
              <tr key={a.id} data-testid={rowTestId(a)} className={`clickable${i === selIndex ? ' selected' : ''}`} aria-selected={i === selIndex} onClick={() => setSelId(a.id)}>
                <td>{a.kind}</td>
                <td className="mono">{rowName(a)}</td>
                <td>{orDash(a.host)}</td>
                <td>
                  {a.wave + 1}: {a.wave_name}
                </td>
                <td>{a.release}</td>
                <td>
                  {fmtMs(a.budget.max_gap_ms)}, {fmtFrames(a.budget.max_lost)}
                </td>
                <td className="num">{a.canary ? <GapVsBudget gap={a.canary.max_gap_ms} budget={a.budget} /> : '—'}</td>
                <td className="num">{a.canary ? <LostVsBudget lost={a.canary.lost} budget={a.budget} /> : '—'}</td>
                <td className="num">{a.canary ? a.canary.vms : '—'}</td>
                <td className="num">{a.previous ? <GapVsBudget gap={a.previous.break_ms} budget={a.budget} within={a.previous.within_budget} /> : '—'}</td>
                <td className="num">{a.previous ? <LostVsBudget lost={a.previous.lost} budget={a.budget} /> : '—'}</td>
                <td title={a.asked}>
                  {fmtTime(a.asked)} <span className="muted">({ago(a.asked, now)})</span>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {sel ? (
        <div className="panel">
          <Context a={sel} />
          <div className="decide">
            <input
              ref={reasonRef}
              data-testid="approval-reason"
              className="reason"
              placeholder="reason (required for approve and deny)"
              maxLength={500}
              value={reason}
              onChange={(e) => setReason(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === 'Enter') {
                  e.preventDefault();
                  act('approve');
                } else if (e.key === 'Escape') e.currentTarget.blur();
              }}
            />
            <button type="button" className="primary" data-testid="approve" disabled={!mayApprove || decide.isPending} onClick={() => act('approve')}>
              Approve
            </button>
            <button type="button" className="danger" data-testid="deny" disabled={!mayApprove || decide.isPending} onClick={() => act('deny')}>
              Deny
            </button>
            {!mayApprove ? <span className="muted">this operator may not approve</span> : null}
          </div>
        </div>
      ) : null}
    </section>
  );
}
