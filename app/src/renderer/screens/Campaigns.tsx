// Campaigns: the list, and the chosen one in full — state, current wave, progress, and per wave →
// host → VM what happened (measured break and lost frames beside the budget, who decided what
// and why), every VM and wave decision in one table, with pause / resume / abort for the
// campaign, a wave or a host.
import { useQuery, useQueryClient } from '@tanstack/react-query';
import type { z } from 'zod';
import { api, type Campaign, type CampaignHost, type ControlScope } from '../../../../protocol/console.js';
import { fmtDateTime, fmtTime, orDash } from '../format.js';
import { navigate, useAction, useReportQueryError } from '../hooks.js';
import { campaignKeys, upsertCampaign } from '../queries.js';
import { campaignProgress } from '../reportModel.js';
import { routeHref } from '../route.js';
import { BudgetText, ConfirmButton, DecisionTable, LostVsBudget, Empty, GapVsBudget, StateTag } from '../ui.js';

type Scope = z.input<typeof ControlScope>;
type Control = (action: 'pause' | 'resume' | 'abort', scope: Scope) => void;

const finished = (c: Campaign) => c.state === 'done' || c.state === 'aborted';

/** Pause / resume / abort buttons for one scope; abort asks first. */
function Controls({ prefix, paused, disabled, onControl, scope, what }: { prefix: string; paused: boolean; disabled: boolean; onControl: Control; scope: Scope; what: string }) {
  return (
    <span className="controls">
      <button type="button" className="small" data-testid={`${prefix}-pause`} disabled={disabled || paused} onClick={() => onControl('pause', scope)}>
        Pause
      </button>
      <button type="button" className="small" data-testid={`${prefix}-resume`} disabled={disabled || !paused} onClick={() => onControl('resume', scope)}>
        Resume
      </button>
      <ConfirmButton
        testid={`${prefix}-abort`}
        className="small danger"
        label="Abort"
        question={`abort ${what}? VMs already moved go back; nothing is left half done`}
        disabled={disabled}
        onConfirm={() => onControl('abort', scope)}
      />
    </span>
  );
}

function HostBlock({ c, h, onControl, busy }: { c: Campaign; h: CampaignHost; onControl: Control; busy: boolean }) {
  const budget = c.plan.spec.budget;
  const hostDone = ['committed', 'rolled-back', 'failed', 'aborted', 'skipped'].includes(h.state);
  return (
    <div className="host-block" data-testid={`camp-host-${h.host}`}>
      <div className="host-head">
        <a href={routeHref('host', h.host)}>{h.host}</a> <StateTag state={h.state} />
        {h.paused ? <span className="tag st-paused">paused</span> : null}
        <span className="muted">
          {orDash(h.from)} → {orDash(h.to)}
        </span>
        <Controls prefix={`camp-host-${h.host}`} paused={h.paused} disabled={busy || finished(c) || hostDone} onControl={onControl} scope={{ level: 'host', host: h.host }} what={`host ${h.host}`} />
      </div>
      {h.error ? <div className="bad">{h.error}</div> : null}
      {h.keeper ? (
        <div className="muted small-text" data-testid={`camp-host-${h.host}-keeper`}>
          keeper {h.keeper.from_version} replaced by {h.keeper.version} first: {h.keeper.sessions} sessions handed over, control paused {h.keeper.pause_us === null ? '?' : (h.keeper.pause_us / 1000).toFixed(1)} ms
        </div>
      ) : null}
      <table className="grid compact">
        <thead>
          <tr>
            <th>VM</th>
            <th>state</th>
            <th>gap / budget</th>
            <th>lost / budget</th>
            <th>decision</th>
            <th>reason</th>
            <th>by</th>
            <th>at</th>
          </tr>
        </thead>
        <tbody>
          {h.vms.map((v) => (
            <tr key={v.vm} data-testid={`camp-vm-${h.host}-${v.vm}`}>
              <td className="mono">{v.vm}</td>
              <td>
                <StateTag state={v.state} />
              </td>
              <td className="num">{v.measurement ? <GapVsBudget gap={v.measurement.break_ms} budget={budget} within={v.measurement.within_budget} /> : '—'}</td>
              <td className="num">
                <LostVsBudget lost={v.measurement?.lost ?? null} budget={budget} />
              </td>
              <td className={v.decision?.decision === 'deny' ? 'bad' : undefined}>{v.decision ? v.decision.decision : c.plan.spec.approval === 'each-vm' ? '—' : <span className="muted">{c.plan.spec.approval}</span>}</td>
              <td>{orDash(v.decision?.reason)}</td>
              <td>{orDash(v.decision?.by)}</td>
              <td title={v.decision?.at}>{fmtTime(v.decision?.at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function CampaignDetail({ c }: { c: Campaign }) {
  const qc = useQueryClient();
  const control = useAction(api.campaignControl, (next) => upsertCampaign(qc, next));
  const onControl: Control = (action, scope) => control.mutate({ id: c.id, action, scope });
  const p = campaignProgress(c);
  const pct = p.total ? Math.round((p.done / p.total) * 100) : 0;
  const wave = c.plan.waves[c.wave];
  const spec = c.plan.spec;
  const busy = control.isPending;
  return (
    <div className="panel" data-testid="camp-detail">
      <div className="toolbar">
        <h3>
          Campaign <span className="mono">{c.id}</span> → {spec.release}
        </h3>
        <span data-testid="camp-state" className={`tag st-${c.state}`}>
          {c.state}
        </span>
        <span data-testid="camp-wave">
          wave {Math.min(c.wave + 1, c.plan.waves.length)} of {c.plan.waves.length}
          {wave ? `: ${wave.name}` : ''}
        </span>
        <span className="spacer" />
        <Controls prefix="camp" paused={c.state !== 'running'} disabled={busy || finished(c)} onControl={onControl} scope={{ level: 'campaign' }} what="the whole campaign" />
      </div>
      <div className="progress" data-testid="camp-progress" title={`${p.moved} moved, ${p.denied} denied, ${p.failed} failed, ${p.rolledBack} rolled back, ${p.active} in progress`}>
        <div className="progress-bar" style={{ width: `${pct}%` }} />
        <span className="progress-text">
          {p.done} / {p.total} VMs done ({p.moved} moved, {p.denied} denied, {p.failed} failed, {p.rolledBack} rolled back)
        </span>
      </div>
      <div className="kv">
        <span>
          budget: <BudgetText budget={spec.budget} />
        </span>
        <span>approval: {spec.approval}</span>
        <span>canary: {orDash(spec.canary)}</span>
        <span>batch: {spec.batch} hosts per wave</span>
        <span>started {fmtDateTime(c.started)}</span>
        {c.finished ? <span>finished {fmtDateTime(c.finished)}</span> : null}
      </div>
      {c.error ? (
        <div className="bad" data-testid="camp-error">
          {c.error}
        </div>
      ) : null}
      {c.plan.waves.map((w) => {
        const hosts = c.hosts.filter((h) => h.wave === w.index);
        const paused = c.waves_paused.includes(w.index);
        const waveDone = hosts.length > 0 && hosts.every((h) => ['committed', 'rolled-back', 'failed', 'aborted', 'skipped'].includes(h.state));
        return (
          <div key={w.index} className={`wave${w.index === c.wave && !finished(c) ? ' current' : ''}`} data-testid={`camp-wave-${w.index}`}>
            <div className="wave-head">
              <h4>
                Wave {w.index + 1}: {w.name}
              </h4>
              {paused ? <span className="tag st-paused">paused</span> : null}
              {w.index === c.wave && !finished(c) ? <span className="tag st-running">current</span> : null}
              <Controls prefix={`camp-wave-${w.index}`} paused={paused} disabled={busy || finished(c) || waveDone} onControl={onControl} scope={{ level: 'wave', wave: w.index }} what={`wave ${w.name}`} />
            </div>
            {hosts.map((h) => (
              <HostBlock key={h.host} c={c} h={h} onControl={onControl} busy={busy} />
            ))}
          </div>
        );
      })}
      <h4>Decisions</h4>
      {c.decisions.length === 0 ? (
        <Empty>{spec.approval === 'auto' ? 'none: auto mode, the budget decides' : 'none yet'}</Empty>
      ) : (
        <DecisionTable decisions={c.decisions} testid="camp-decisions" />
      )}
      {c.rollbacks.length > 0 ? (
        <>
          <h4>Rollbacks</h4>
          <table className="grid compact">
            <thead>
              <tr>
                <th>at</th>
                <th>by</th>
                <th>scope</th>
                <th>result</th>
              </tr>
            </thead>
            <tbody>
              {c.rollbacks.map((r) => (
                <tr key={`${r.at}-${r.scope}`}>
                  <td>{fmtDateTime(r.at)}</td>
                  <td>{r.by}</td>
                  <td>{r.scope}</td>
                  <td>{r.result}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : null}
      <div className="links">
        <a href={routeHref('reports', c.id)}>report</a> · <a href={routeHref('approvals')}>approvals</a>
      </div>
    </div>
  );
}

/** The campaign a screen shows when none is named: the newest running one, else the newest. */
export function defaultCampaign(list: readonly Campaign[]): Campaign | undefined {
  const byNewest = [...list].sort((a, b) => b.started.localeCompare(a.started));
  return byNewest.find((c) => c.state === 'running' || c.state === 'paused') ?? byNewest[0];
}

export function Campaigns({ id }: { id: string | null }) {
  const q = useQuery(campaignKeys.list());
  useReportQueryError(q, 'campaign/list');
  const list = [...(q.data ?? [])].sort((a, b) => b.started.localeCompare(a.started));
  const chosen = id ? list.find((c) => c.id === id) : defaultCampaign(list);
  return (
    <section data-testid="campaign">
      <div className="toolbar">
        <h2>Campaigns</h2>
        <a href={routeHref('wizard')}>new campaign</a>
      </div>
      {q.isPending ? <Empty>loading…</Empty> : null}
      {!q.isPending && list.length === 0 ? <Empty>no campaigns yet</Empty> : null}
      {list.length > 0 ? (
        <table className="grid" data-testid="camp-list">
          <thead>
            <tr>
              <th>id</th>
              <th>release</th>
              <th>hosts</th>
              <th>state</th>
              <th>wave</th>
              <th>progress</th>
              <th>started</th>
              <th>finished</th>
            </tr>
          </thead>
          <tbody>
            {list.map((c) => {
              const p = campaignProgress(c);
              return (
                <tr key={c.id} data-testid={`camp-row-${c.id}`} className={`clickable${c.id === chosen?.id ? ' selected' : ''}`} onClick={() => navigate(routeHref('campaign', c.id))}>
                  <td className="mono">{c.id}</td>
                  <td>{c.plan.spec.release}</td>
                  <td>{c.plan.spec.hosts.join(', ')}</td>
                  <td>
                    <StateTag state={c.state} />
                  </td>
                  <td>
                    {Math.min(c.wave + 1, c.plan.waves.length)} / {c.plan.waves.length}
                  </td>
                  <td>
                    {p.done} / {p.total} VMs
                  </td>
                  <td>{fmtDateTime(c.started)}</td>
                  <td>{fmtDateTime(c.finished)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : null}
      {id && !chosen && !q.isPending ? <Empty>no campaign {id}</Empty> : null}
      {chosen ? <CampaignDetail c={chosen} /> : null}
    </section>
  );
}
