// New campaign: choose hosts (unreachable ones shown, disabled, with why), a release they all
// have, a canary, the batch size, how approvals work and the budget; preview the exact plan
// (waves, hosts, VMs in order, blockers) and only then start it — Start needs a preview of
// exactly the current choices and no blockers. The upgrade mode (handoff, in-place stage swap,
// or the agent's choice) is set for the campaign and may be overridden per host; the preview
// shows, per host, what its agent judged possible and the break each mode is expected to cost.
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import type { ModeChoice, ModeOption } from '../../../../protocol/agent.js';
import { api, type ApprovalMode, type CampaignSpec, type Plan } from '../../../../protocol/console.js';
import { commonReleases, fmtBreak, orDash } from '../format.js';
import { navigate, useAction, useReportQueryError } from '../hooks.js';
import { fleetKeys, upsertCampaign } from '../queries.js';
import { parseRoute, routeHref } from '../route.js';
import { BudgetText, Empty, Field } from '../ui.js';

const modes: { mode: ApprovalMode; label: string; hint: string }[] = [
  { mode: 'each-vm', label: 'each VM', hint: 'an operator approves every VM switch' },
  { mode: 'each-wave', label: 'each wave', hint: 'an operator approves each wave; VMs inside it move within the budget' },
  { mode: 'auto', label: 'auto', hint: 'no approvals; every switch must stay within the budget or the campaign stops' },
];

const upgradeModes: { mode: ModeChoice; label: string; hint: string }[] = [
  { mode: 'handoff', label: 'handoff', hint: 'a new datapath generation beside the old one; each VM handed over, one at a time' },
  { mode: 'auto', label: 'agent decides', hint: 'swap where the host\'s agent says the core and DPDK match, handoff elsewhere' },
  { mode: 'swap', label: 'in-place swap', hint: 'the running generation replaces its forwarding stage; all of a host\'s VMs at once, sub-microsecond window' },
];

function Options({ options }: { options: ModeOption[] }) {
  if (options.length === 0) return <span className="muted">agent not asked</span>;
  return (
    <>
      {options.map((o) => (
        <div key={o.mode} className={o.available ? undefined : 'muted'} title={`${o.reason} (prediction: ${o.basis})`} data-testid={`plan-option-${o.mode}`}>
          {o.mode}: {o.available ? `${fmtBreak(o.predicted_break_us)} per VM, approval ${o.approvals}` : `not possible — ${o.reason}`}
        </div>
      ))}
    </>
  );
}

function PlanView({ plan, stale }: { plan: Plan; stale: boolean }) {
  const spec = plan.spec;
  return (
    <div className={`panel plan${stale ? ' stale' : ''}`} data-testid="plan">
      <h3>
        Plan: {spec.hosts.length} host{spec.hosts.length === 1 ? '' : 's'} to {spec.release}, {plan.waves.length} wave{plan.waves.length === 1 ? '' : 's'}, approval{' '}
        {spec.approval}
      </h3>
      {stale ? <div className="warn">the choices changed since this preview: preview again before starting</div> : null}
      <div>
        budget: <BudgetText budget={spec.budget} />
      </div>
      {plan.blockers.length > 0 ? (
        <ul className="blockers" data-testid="plan-blockers">
          {plan.blockers.map((b) => (
            <li key={b} className="bad">
              blocker: {b}
            </li>
          ))}
        </ul>
      ) : null}
      {plan.notes.length > 0 ? (
        <ul className="notes" data-testid="plan-notes">
          {plan.notes.map((n) => (
            <li key={n}>{n}</li>
          ))}
        </ul>
      ) : null}
      {plan.waves.map((w) => (
        <div key={w.index} className="wave" data-testid={`plan-wave-${w.index}`}>
          <h4>
            Wave {w.index + 1}: {w.name}
          </h4>
          <table className="grid compact">
            <thead>
              <tr>
                <th>host</th>
                <th>group</th>
                <th>release</th>
                <th>mode</th>
                <th>expected break</th>
                <th>VMs, in the order they move</th>
                <th>what the agent judged</th>
              </tr>
            </thead>
            <tbody>
              {w.hosts.map((h) => (
                <tr key={h.host} data-testid={`plan-host-${h.host}`}>
                  <td>{h.host}</td>
                  <td>{orDash(h.group)}</td>
                  <td>
                    {orDash(h.from)} → {spec.release}
                  </td>
                  <td data-testid={`plan-mode-${h.host}`}>{h.mode === 'swap' ? 'in-place swap' : 'handoff'}</td>
                  <td data-testid={`plan-break-${h.host}`}>{fmtBreak(h.predicted_break_us)}</td>
                  <td className="mono">
                    {h.mode === 'swap' ? `all at once: ${h.vms.join(', ')}` : h.vms.length ? h.vms.map((v, i) => `${i + 1}. ${v}`).join('   ') : '— (no VMs)'}
                  </td>
                  <td className="small-text">
                    <Options options={h.options} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </div>
  );
}

export function Wizard() {
  const qc = useQueryClient();
  const fleet = useQuery(fleetKeys.list());
  useReportQueryError(fleet, 'fleet/list');
  const hosts = fleet.data ?? [];
  const [chosen, setChosen] = useState<ReadonlySet<string>>(new Set());
  const [release, setRelease] = useState('');
  const [canary, setCanary] = useState('');
  const [batch, setBatch] = useState('1');
  const [approval, setApproval] = useState<ApprovalMode>('each-vm');
  const [mode, setMode] = useState<ModeChoice>('handoff');
  const [hostModes, setHostModes] = useState<Readonly<Record<string, ModeChoice>>>({});
  const [gap, setGap] = useState('10');
  const [lost, setLost] = useState('0');
  const [preview, setPreview] = useState<{ key: string; plan: Plan } | null>(null);

  const picked = hosts.filter((h) => chosen.has(h.name));
  const releases = commonReleases(picked.map((h) => h.releases));
  const effRelease = releases.includes(release) ? release : (releases[0] ?? '');
  const effCanary = picked.some((h) => h.name === canary) ? canary : '';
  const spec: CampaignSpec = {
    hosts: picked.map((h) => h.name),
    release: effRelease,
    canary: effCanary || null,
    batch: Number(batch),
    approval,
    budget: { max_gap_ms: Number(gap), max_lost: Number(lost) },
    mode,
    host_modes: Object.fromEntries(Object.entries(hostModes).filter(([h]) => chosen.has(h))),
  };
  const key = JSON.stringify(spec);
  const stale = preview !== null && preview.key !== key;

  const doPreview = useAction(api.campaignPreview, (plan, params) => setPreview({ key: JSON.stringify(params), plan }));
  const start = useAction(api.campaignStart, (c) => {
    upsertCampaign(qc, c);
    // to the new campaign, unless the operator went elsewhere while it started (its hosts are
    // asked for their plans first: that can take a moment, and a click meanwhile wins)
    if (parseRoute(location.hash).screen === 'wizard') navigate(routeHref('campaign', c.id));
  });
  const canStart = preview !== null && !stale && preview.plan.blockers.length === 0 && !start.isPending;

  const toggle = (name: string) => {
    const next = new Set(chosen);
    if (next.has(name)) next.delete(name);
    else next.add(name);
    setChosen(next);
  };

  return (
    <section data-testid="wizard">
      <h2>New campaign</h2>
      <div className="cols">
        <div className="panel">
          <h3>Hosts</h3>
          {hosts.length === 0 ? <Empty>no hosts in the fleet</Empty> : null}
          <table className="grid compact">
            <thead>
              <tr>
                <th />
                <th>host</th>
                <th>group</th>
                <th>active</th>
                <th>VMs</th>
                <th>releases installed</th>
                <th>mode</th>
                <th>connection</th>
              </tr>
            </thead>
            <tbody>
              {hosts.map((h) => {
                const usable = h.conn === 'connected';
                return (
                  <tr key={h.name} className={usable ? undefined : 'row-disabled'}>
                    <td>
                      <input type="checkbox" data-testid={`wiz-host-${h.name}`} disabled={!usable} checked={chosen.has(h.name)} onChange={() => toggle(h.name)} />
                    </td>
                    <td>{h.name}</td>
                    <td>{orDash(h.group)}</td>
                    <td>{orDash(h.active?.release)}</td>
                    <td className="num">{h.vms.length}</td>
                    <td>{h.releases.join(', ') || '—'}</td>
                    <td>
                      <select
                        data-testid={`wiz-hostmode-${h.name}`}
                        disabled={!chosen.has(h.name)}
                        value={hostModes[h.name] ?? ''}
                        onChange={(e) => {
                          const { [h.name]: _, ...rest } = hostModes;
                          setHostModes(e.target.value ? { ...rest, [h.name]: e.target.value as ModeChoice } : rest);
                        }}
                      >
                        <option value="">as the campaign</option>
                        {upgradeModes.map((m) => (
                          <option key={m.mode} value={m.mode}>
                            {m.label}
                          </option>
                        ))}
                      </select>
                    </td>
                    <td className={usable ? 'good' : 'bad'} data-testid={`wiz-why-${h.name}`}>
                      {usable ? 'connected' : `${h.conn}${h.problem ? `: ${h.problem}` : ''} — cannot be included until connected`}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <div className="muted small-text">
            {picked.length} of {hosts.length} chosen; hosts not chosen are not touched.
          </div>
        </div>
        <div className="panel form-grid">
          <Field label="Target release" hint={picked.length ? 'releases every chosen host has' : 'choose hosts first'}>
            <select data-testid="wiz-release" value={effRelease} onChange={(e) => setRelease(e.target.value)}>
              {releases.length === 0 ? <option value="">{picked.length ? 'no release common to these hosts' : '—'}</option> : null}
              {releases.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </Field>
          <Field label="Canary host" hint="upgraded alone first; a failure there stops everything">
            <select data-testid="wiz-canary" value={effCanary} onChange={(e) => setCanary(e.target.value)}>
              <option value="">no canary</option>
              {picked.map((h) => (
                <option key={h.name} value={h.name}>
                  {h.name}
                </option>
              ))}
            </select>
          </Field>
          <Field label="Hosts per wave" hint="after the canary">
            <input data-testid="wiz-batch" type="number" min={1} max={64} value={batch} onChange={(e) => setBatch(e.target.value)} />
          </Field>
          <fieldset className="field span-all">
            <legend className="field-label">Approval</legend>
            {modes.map((m) => (
              <label key={m.mode} className="radio">
                <input type="radio" name="approval" data-testid={`wiz-approval-${m.mode}`} checked={approval === m.mode} onChange={() => setApproval(m.mode)} />
                {m.label} <span className="muted">— {m.hint}</span>
              </label>
            ))}
          </fieldset>
          <fieldset className="field span-all">
            <legend className="field-label">Upgrade mode</legend>
            {upgradeModes.map((m) => (
              <label key={m.mode} className="radio">
                <input type="radio" name="mode" data-testid={`wiz-mode-${m.mode}`} checked={mode === m.mode} onChange={() => setMode(m.mode)} />
                {m.label} <span className="muted">— {m.hint}</span>
              </label>
            ))}
          </fieldset>
          <Field label="Budget: max gap (ms per VM)">
            <input data-testid="wiz-gap" type="number" min={0} step="any" value={gap} onChange={(e) => setGap(e.target.value)} />
          </Field>
          <Field label="Budget: max lost frames (per VM)">
            <input data-testid="wiz-lost" type="number" min={0} step={1} value={lost} onChange={(e) => setLost(e.target.value)} />
          </Field>
          <div className="form-actions">
            <button type="button" data-testid="wiz-preview" disabled={doPreview.isPending} onClick={() => doPreview.mutate(spec)}>
              {doPreview.isPending ? 'Previewing…' : 'Preview'}
            </button>
            <button type="button" className="primary" data-testid="wiz-start" disabled={!canStart} onClick={() => start.mutate(spec)}>
              {start.isPending ? 'Starting…' : 'Start'}
            </button>
            <span className="muted small-text">
              {preview === null
                ? 'preview first'
                : stale
                  ? 'changed since the preview'
                  : preview.plan.blockers.length
                    ? `${preview.plan.blockers.length} blocker(s): fix them to start`
                    : 'ready to start'}
            </span>
          </div>
        </div>
      </div>
      {preview ? <PlanView plan={preview.plan} stale={stale} /> : null}
    </section>
  );
}
