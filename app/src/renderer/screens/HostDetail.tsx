// One host: its datapath generations (active, target), every VM with the generation serving it
// and its last measured switch, health problems, and the live charts of its VMs; and the
// passphrase of its identity file (host/passphrase: kept by the core for the session, and in the
// OS keyring when the operator asks); and the
// host's packages: Upload release and Install agent (HostPackages.tsx).
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, type HostRow } from '../../../../protocol/console.js';
import { client } from '../client.js';
import { clearError, messageOf, reportError } from '../errors.js';
import { fmtDateTime, fmtFrames, fmtMs, fmtPps, orDash } from '../format.js';
import { useReportQueryError } from '../hooks.js';
import { campaignKeys, fleetKeys, upsertHost } from '../queries.js';
import { routeHref } from '../route.js';
import { Empty, GapVsBudget, StateTag } from '../ui.js';
import { AgentInstall, KeeperUpgrade, ReleaseUpload } from './HostPackages.js';
import { budgetForHost, LiveCharts } from './Live.js';

/** The release a VM's serving generation runs (the row's own release, else the host's
 * generation of that name). */
function servingRelease(h: HostRow, serving: string | null, release: string | null): string | null {
  if (release) return release;
  if (serving && h.active?.gen === serving) return h.active.release;
  if (serving && h.target?.gen === serving) return h.target.release;
  return null;
}

/** Set the passphrase of the host's identity file. The secret lives only in this form's state
 * until it is sent (called directly, not through a mutation, so no query cache keeps it); it is
 * never shown, logged or put in an error message, and the field is emptied whatever the outcome.
 * Remembering it in browser mode is refused (no keyring): that refusal is shown as the API words it. */
function PassphraseForm({ host, onDone }: { host: string; onDone: () => void }) {
  const qc = useQueryClient();
  const [secret, setSecret] = useState('');
  const [remember, setRemember] = useState(false);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (busy || secret === '') return;
    const passphrase = secret;
    setSecret('');
    setBusy(true);
    setResult(null);
    clearError();
    client
      .call(api.hostPassphrase, { name: host, passphrase, remember })
      .then((row) => {
        upsertHost(qc, row);
        setResult({ ok: true, text: `${remember ? 'remembered in the OS keyring' : 'kept for this session'}; reconnecting: ${row.conn}${row.problem ? ` (${row.problem})` : ''}` });
      })
      .catch((err: unknown) => {
        const text = messageOf(err);
        reportError('host/passphrase', text);
        setResult({ ok: false, text });
      })
      .finally(() => setBusy(false));
  };
  return (
    <form className="panel form-row" onSubmit={submit} data-testid="host-passphrase-form" autoComplete="off">
      <label className="field">
        <span className="field-label">Passphrase of {host}&apos;s identity file</span>
        <input
          type="password"
          data-testid="host-passphrase-input"
          autoComplete="new-password"
          spellCheck={false}
          maxLength={1024}
          value={secret}
          disabled={busy}
          onChange={(e) => setSecret(e.target.value)}
        />
      </label>
      <label className="field-inline">
        <input type="checkbox" data-testid="host-passphrase-remember" checked={remember} disabled={busy} onChange={(e) => setRemember(e.target.checked)} /> Remember in the OS keyring
      </label>
      <button type="submit" className="primary small" data-testid="host-passphrase-save" disabled={busy || secret === ''}>
        {busy ? 'Saving…' : 'Save and reconnect'}
      </button>
      <button
        type="button"
        className="small"
        data-testid="host-passphrase-cancel"
        onClick={() => {
          setSecret('');
          onDone();
        }}
      >
        Close
      </button>
      <span className="muted small-text">kept in memory for this session, in the OS keyring only if you ask; never shown</span>
      {result ? (
        <div className={result.ok ? 'good' : 'bad'} data-testid={result.ok ? 'host-passphrase-ok' : 'host-passphrase-error'} role={result.ok ? 'status' : 'alert'}>
          {result.text}
        </div>
      ) : null}
    </form>
  );
}

export function HostDetail({ name }: { name: string }) {
  const fleet = useQuery(fleetKeys.list());
  const campaigns = useQuery(campaignKeys.list());
  useReportQueryError(fleet, 'fleet/list');
  const [passphrase, setPassphrase] = useState(false);
  const [releases, setReleases] = useState(false);
  const [install, setInstall] = useState(false);
  const h = fleet.data?.find((x) => x.name === name);
  if (!h)
    return (
      <section data-testid="host-detail">
        <Empty>{fleet.isPending ? 'loading…' : `no host ${name} in the fleet`}</Empty>
      </section>
    );
  const budget = budgetForHost(name, h, campaigns.data ?? [])?.budget ?? null;
  return (
    <section data-testid="host-detail">
      <div className="toolbar">
        <h2>
          Host <span className="mono">{h.name}</span>
        </h2>
        <span className="mono muted">{h.address}</span>
        <span>group {orDash(h.group)}</span>
        <span className={h.conn === 'connected' ? 'good' : 'bad'} data-testid="host-detail-conn">
          {h.conn}
          {h.problem ? `: ${h.problem}` : ''}
        </span>
        <span>agent {orDash(h.agent_version)}</span>
        <StateTag state={h.state} />
        {h.campaign ? <a href={routeHref('campaign', h.campaign)}>campaign {h.campaign}</a> : null}
        <a href={routeHref('live', h.name)}>live view</a>
        <button type="button" className="small" data-testid="host-passphrase" aria-expanded={passphrase} onClick={() => setPassphrase(!passphrase)}>
          Passphrase
        </button>
        <button type="button" className="small" data-testid="host-releases-open" aria-expanded={releases} onClick={() => setReleases(!releases)}>
          Releases
        </button>
        <button type="button" className="small" data-testid="host-agent-install-open" aria-expanded={install} onClick={() => setInstall(!install)}>
          Install agent
        </button>
      </div>
      {passphrase ? <PassphraseForm key={h.name} host={h.name} onDone={() => setPassphrase(false)} /> : null}
      {releases ? <ReleaseUpload key={h.name} hosts={[h]} onDone={() => setReleases(false)} /> : null}
      {install ? <AgentInstall key={h.name} hosts={[h]} onDone={() => setInstall(false)} /> : null}
      {h.exposed ? (
        <div className="bad panel" data-testid="host-exposed">
          Exposed since {fmtDateTime(h.exposed.since)}: {h.exposed.why}. No standby runs: a further crash takes the VMs&apos; links down until a generation is back.
        </div>
      ) : null}
      {h.error ? <div className="bad">agent error: {h.error}</div> : null}

      <div className="cols">
        <div>
          <h3>Generations</h3>
          <table className="grid compact" data-testid="host-gens">
            <thead>
              <tr>
                <th>role</th>
                <th>generation</th>
                <th>release</th>
              </tr>
            </thead>
            <tbody>
              <tr data-testid="gen-active">
                <td>active</td>
                <td className="mono">{orDash(h.active?.gen)}</td>
                <td>
                  {orDash(h.active?.release)}
                  {h.active ? <span className="muted" data-testid="gen-active-kind"> · {h.active.kind ?? 'hitless-dp'}</span> : null}
                  {h.active?.core && h.active.core !== h.active.release ? <span className="muted"> (stage swapped in; process core {h.active.core})</span> : null}
                </td>
              </tr>
              <tr data-testid="gen-target">
                <td>target</td>
                <td className="mono">{orDash(h.target?.gen)}</td>
                <td>{orDash(h.target?.release)}</td>
              </tr>
              <tr data-testid="gen-standby">
                <td>standby</td>
                <td className="mono">{orDash(h.standby)}</td>
                <td className="muted">{h.standby ? 'takes the sessions if their generation dies' : 'none: a crash fails over to the other generation, if one runs'}</td>
              </tr>
            </tbody>
          </table>
          <div className="muted small-text">installed releases: {h.releases.join(', ') || '—'}</div>
          <div className="muted small-text" data-testid="host-supervisor">
            processes: {h.supervisor ?? '—'}
          </div>
          <KeeperUpgrade key={h.name} host={h} />
        </div>
        <div>
          <h3>Health</h3>
          {h.health === null ? (
            <Empty>no health report yet</Empty>
          ) : h.health.ok ? (
            <div className="good" data-testid="host-health">
              ok: keeper and generations alive, every VM has a frontend
            </div>
          ) : (
            <ul className="bad" data-testid="host-health">
              {h.health.problems.map((p) => (
                <li key={p}>{p}</li>
              ))}
            </ul>
          )}
        </div>
      </div>

      <h3>VMs</h3>
      <table className="grid" data-testid="host-vms">
        <thead>
          <tr>
            <th>VM</th>
            <th>serving generation (release)</th>
            <th>frontend</th>
            <th>moved</th>
            <th>last break</th>
            <th>lost</th>
            <th>last switch</th>
            <th>rx</th>
            <th>tx</th>
          </tr>
        </thead>
        <tbody>
          {h.vms.map((v) => (
            <tr key={v.vm} data-testid={`vm-row-${v.vm}`}>
              <td className="mono">{v.vm}</td>
              <td data-testid={`vm-serving-${v.vm}`}>
                <span className="mono">{orDash(v.serving)}</span> ({orDash(servingRelease(h, v.serving, v.release))})
              </td>
              <td className={v.connected ? 'good' : 'bad'}>{v.connected ? 'connected' : 'away'}</td>
              <td>{v.moved ? 'yes' : 'no'}</td>
              <td className="num">{v.last ? <GapVsBudget gap={v.last.break_ms} budget={budget} within={v.last.within_budget} /> : '—'}</td>
              <td className="num">{v.last ? fmtFrames(v.last.lost) : '—'}</td>
              <td className="muted">{v.last ? `${v.last.from} → ${v.last.to}, window ${fmtMs(v.last.window_us / 1000)}` : '—'}</td>
              <td className="num">{fmtPps(v.rx_pps)}</td>
              <td className="num">{fmtPps(v.tx_pps)}</td>
            </tr>
          ))}
          {h.vms.length === 0 ? (
            <tr>
              <td colSpan={9} className="muted">
                no VMs reported
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>

      <Failovers h={h} />

      <h3>Live</h3>
      <LiveCharts host={h.name} />
    </section>
  );
}

/** The host's generation deaths (its agent's journal): what the keeper did at once, what was
 * lost at the death (inside the dead process and in its peer link), and how long until a standby ran again. */
function Failovers({ h }: { h: HostRow }) {
  if (h.failovers.length === 0) return null;
  return (
    <>
      <h3>Failovers</h3>
      <table className="grid" data-testid="host-failovers">
        <thead>
          <tr>
            <th>when</th>
            <th>generation died</th>
            <th>sessions moved</th>
            <th>links down</th>
            <th title="frames inside the dead process and in its peer link">lost at the death</th>
            <th>standby back</th>
            <th>frontends back</th>
          </tr>
        </thead>
        <tbody>
          {[...h.failovers].reverse().map((f) => (
            <tr key={`${f.t}-${f.gen}`} data-testid={`failover-${f.gen}`}>
              <td>{fmtDateTime(f.t)}</td>
              <td>
                <span className="mono">{f.gen}</span> <span className="muted">({f.cause})</span>
              </td>
              <td>{f.moved.length ? f.moved.map((m) => `${m.vm} → ${m.to}`).join(', ') : '—'}</td>
              <td className={f.down.length ? 'bad' : undefined}>{f.down.length ? f.down.join(', ') : 'none'}</td>
              <td className="num">{fmtFrames(f.lost_inside)}</td>
              <td>
                {f.restored ? (
                  <>
                    <span className="mono">{f.restored.gen}</span> after {fmtMs(f.restored.took_ms)}
                  </>
                ) : f.restore_error ? (
                  <span className="bad">failed: {f.restore_error}</span>
                ) : (
                  <span className="warn">not yet</span>
                )}
              </td>
              <td className="num">{f.restored?.outage_ms != null ? fmtMs(f.restored.outage_ms) : '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
