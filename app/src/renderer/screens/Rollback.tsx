// Rollback: choose a scope (one VM, a host, a wave, a whole campaign), preview exactly what each
// host's agent will be asked to do and why, give a reason, execute (confirmed), then see where
// every VM runs afterwards and whether traffic reaches it.
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, type RollbackPlan, type RollbackScope } from '../../../../protocol/console.js';
import { fmtPps, orDash } from '../format.js';
import { useAction, useNow, useReportQueryError } from '../hooks.js';
import { campaignKeys, fleetKeys } from '../queries.js';
import { ConfirmButton, Empty, Field } from '../ui.js';

type Level = RollbackScope['level'];

export function Rollback() {
  const qc = useQueryClient();
  const fleet = useQuery(fleetKeys.list());
  const campaigns = useQuery(campaignKeys.list());
  useReportQueryError(fleet, 'fleet/list');
  useReportQueryError(campaigns, 'campaign/list');
  const hosts = fleet.data ?? [];
  const camps = [...(campaigns.data ?? [])].sort((a, b) => b.started.localeCompare(a.started));

  const [level, setLevel] = useState<Level>('host');
  const [host, setHost] = useState('');
  const [vm, setVm] = useState('');
  const [campaign, setCampaign] = useState('');
  const [wave, setWave] = useState('0');
  const [reason, setReason] = useState('');
  const [preview, setPreview] = useState<{ key: string; plan: RollbackPlan } | null>(null);
  const [startedAt, setStartedAt] = useState(0);
  const now = useNow(250);

  const effHost = hosts.some((h) => h.name === host) ? host : (hosts[0]?.name ?? '');
  const vms = hosts.find((h) => h.name === effHost)?.vms.map((v) => v.vm) ?? [];
  const effVm = vms.includes(vm) ? vm : (vms[0] ?? '');
  const effCampaign = camps.some((c) => c.id === campaign) ? campaign : (camps[0]?.id ?? '');
  const waves = camps.find((c) => c.id === effCampaign)?.plan.waves ?? [];

  const scope: RollbackScope =
    level === 'vm'
      ? { level, host: effHost, vm: effVm }
      : level === 'host'
        ? { level, host: effHost }
        : level === 'wave'
          ? { level, campaign: effCampaign, wave: Number(wave) }
          : { level, campaign: effCampaign };
  const key = JSON.stringify(scope);
  const stale = preview !== null && preview.key !== key;

  const doPreview = useAction(api.rollbackPreview, (plan, params) => setPreview({ key: JSON.stringify(params), plan }));
  const run = useAction(api.rollbackRun, () => {
    void qc.invalidateQueries({ queryKey: fleetKeys.all });
    void qc.invalidateQueries({ queryKey: campaignKeys.all });
  });
  const canRun = preview !== null && !stale && preview.plan.blockers.length === 0 && !run.isPending;
  const result = run.data;

  return (
    <section data-testid="rollback">
      <h2>Rollback</h2>
      <div className="panel form-row">
        <Field label="Scope">
          <select data-testid="rb-level" value={level} onChange={(e) => setLevel(e.target.value as Level)}>
            <option value="vm">one VM</option>
            <option value="host">a host</option>
            <option value="wave">a wave of a campaign</option>
            <option value="campaign">a whole campaign</option>
          </select>
        </Field>
        {level === 'vm' || level === 'host' ? (
          <Field label="Host">
            <select data-testid="rb-host" value={effHost} onChange={(e) => setHost(e.target.value)}>
              {hosts.length === 0 ? <option value="">no hosts</option> : null}
              {hosts.map((h) => (
                <option key={h.name} value={h.name}>
                  {h.name} ({h.active?.release ?? '?'}
                  {h.target ? ` + ${h.target.release}` : ''})
                </option>
              ))}
            </select>
          </Field>
        ) : null}
        {level === 'vm' ? (
          <Field label="VM">
            <select data-testid="rb-vm" value={effVm} onChange={(e) => setVm(e.target.value)}>
              {vms.length === 0 ? <option value="">no VMs</option> : null}
              {vms.map((v) => (
                <option key={v} value={v}>
                  {v}
                </option>
              ))}
            </select>
          </Field>
        ) : null}
        {level === 'wave' || level === 'campaign' ? (
          <Field label="Campaign">
            <select data-testid="rb-campaign" value={effCampaign} onChange={(e) => setCampaign(e.target.value)}>
              {camps.length === 0 ? <option value="">no campaigns</option> : null}
              {camps.map((c) => (
                <option key={c.id} value={c.id}>
                  {c.id} → {c.plan.spec.release} ({c.state})
                </option>
              ))}
            </select>
          </Field>
        ) : null}
        {level === 'wave' ? (
          <Field label="Wave">
            <select data-testid="rb-wave" value={wave} onChange={(e) => setWave(e.target.value)}>
              {waves.map((w) => (
                <option key={w.index} value={String(w.index)}>
                  {w.index + 1}: {w.name} ({w.hosts.map((h) => h.host).join(', ')})
                </option>
              ))}
            </select>
          </Field>
        ) : null}
        <button type="button" data-testid="rb-preview" disabled={doPreview.isPending} onClick={() => doPreview.mutate(scope)}>
          {doPreview.isPending ? 'Previewing…' : 'Preview'}
        </button>
      </div>

      {preview ? (
        <div className={`panel${stale ? ' stale' : ''}`} data-testid="rb-plan">
          <h3>Rollback plan</h3>
          {stale ? <div className="warn">the scope changed since this preview: preview again</div> : null}
          {preview.plan.blockers.length > 0 ? (
            <ul data-testid="rb-blockers">
              {preview.plan.blockers.map((b) => (
                <li key={b} className="bad">
                  blocker: {b}
                </li>
              ))}
            </ul>
          ) : null}
          {preview.plan.steps.length === 0 ? (
            <Empty>nothing to roll back in this scope</Empty>
          ) : (
            <table className="grid compact">
              <thead>
                <tr>
                  <th>host</th>
                  <th>action</th>
                  <th>VMs</th>
                  <th>from → to</th>
                  <th>why</th>
                </tr>
              </thead>
              <tbody>
                {preview.plan.steps.map((s) => (
                  <tr key={`${s.host}-${s.action}`} data-testid={`rb-step-${s.host}`}>
                    <td>{s.host}</td>
                    <td className={s.action === 'nothing' ? 'muted' : 'warn'}>{s.action}</td>
                    <td className="mono">{s.vms.join(', ') || '—'}</td>
                    <td>
                      {orDash(s.from)} → {orDash(s.to)}
                    </td>
                    <td>{s.why}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <div className="decide">
            <input data-testid="rb-reason" className="reason" placeholder="reason (required)" maxLength={500} value={reason} onChange={(e) => setReason(e.target.value)} />
            <ConfirmButton
              testid="rb-execute"
              className="danger"
              label="Execute"
              question="roll back as previewed?"
              disabled={!canRun}
              onConfirm={() => {
                setStartedAt(Date.now());
                run.mutate({ scope, reason });
              }}
            />
          </div>
        </div>
      ) : null}

      {run.isPending ? (
        <div className="panel running" data-testid="rb-running">
          <div className="indeterminate" />
          rolling back… {Math.max(0, Math.round((now - startedAt) / 1000))} s
        </div>
      ) : null}

      {result && !run.isPending ? (
        <div className="panel" data-testid="rb-done">
          <div className={result.ok ? 'good' : 'bad'} data-testid="rb-result">
            {result.ok ? 'rollback ok' : `rollback finished with ${result.errors.length} error(s)`}; traffic reaches {result.verify.filter((v) => v.traffic).length} of{' '}
            {result.verify.length} VMs checked
          </div>
          {result.errors.length > 0 ? (
            <ul data-testid="rb-errors">
              {result.errors.map((e) => (
                <li key={e} className="bad">
                  {e}
                </li>
              ))}
            </ul>
          ) : null}
          <table className="grid compact" data-testid="rb-verify">
            <thead>
              <tr>
                <th>host</th>
                <th>VM</th>
                <th>serving (release)</th>
                <th>rx</th>
                <th>traffic</th>
              </tr>
            </thead>
            <tbody>
              {result.verify.map((v) => (
                <tr key={`${v.host}/${v.vm}`} data-testid={`rb-verify-${v.host}-${v.vm}`}>
                  <td>{v.host}</td>
                  <td className="mono">{v.vm}</td>
                  <td>
                    <span className="mono">{orDash(v.serving)}</span> ({orDash(v.release)})
                  </td>
                  <td className="num">{fmtPps(v.rx_pps)}</td>
                  <td className={v.traffic ? 'good' : 'bad'}>{v.traffic ? 'yes' : 'NO'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}
