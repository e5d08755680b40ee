// One host: its datapath generations (active, target), every VM with the generation serving it
// and its last measured switch, health problems, and the live charts of its VMs; and the
// passphrase of its identity file (host/passphrase, kept by the core in the OS keyring); and its
// releases, with an upload of one from the console's library (release/upload); and Install agent
// (agent/install: the library's host package, installed or upgraded over SSH).
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, type HostRow } from '../../../../protocol/console.js';
import { client } from '../client.js';
import { clearError, messageOf, reportError } from '../errors.js';
import { fmtDateTime, fmtFrames, fmtMs, fmtPps, orDash } from '../format.js';
import { useReportQueryError } from '../hooks.js';
import { campaignKeys, fleetKeys, releaseKeys, upsertHost } from '../queries.js';
import { routeHref } from '../route.js';
import { Empty, GapVsBudget, StateTag } from '../ui.js';
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
 * Browser mode refuses (no keyring): that refusal is shown as the API words it. */
function PassphraseForm({ host, onDone }: { host: string; onDone: () => void }) {
  const qc = useQueryClient();
  const [secret, setSecret] = useState('');
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
      .call(api.hostPassphrase, { name: host, passphrase })
      .then((row) => {
        upsertHost(qc, row);
        setResult({ ok: true, text: `stored; reconnecting: ${row.conn}${row.problem ? ` (${row.problem})` : ''}` });
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
      <span className="muted small-text">kept in the OS keyring by the desktop app; never shown</span>
      {result ? (
        <div className={result.ok ? 'good' : 'bad'} data-testid={result.ok ? 'host-passphrase-ok' : 'host-passphrase-error'} role={result.ok ? 'status' : 'alert'}>
          {result.text}
        </div>
      ) : null}
    </form>
  );
}

/** Upload a release of the console's library to this host: the releases it has, a release to
 * send, the preview of what is copied and run, then the host agent's verdict. */
function ReleaseUpload({ h, onDone }: { h: HostRow; onDone: () => void }) {
  const qc = useQueryClient();
  const library = useQuery(releaseKeys.library());
  useReportQueryError(library, 'release/library');
  const [file, setFile] = useState('');
  const [preview, setPreview] = useState<string[] | null>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const releases = library.data?.releases ?? [];
  const chosen = file || releases[0]?.file || '';
  const fail = (method: string) => (err: unknown) => {
    const text = messageOf(err);
    reportError(method, text);
    setResult({ ok: false, text });
  };
  const showPreview = () => {
    setResult(null);
    clearError();
    client.call(api.releasePreview, { hosts: [h.name], file: chosen }).then((p) => setPreview(p.lines), fail('release/preview'));
  };
  const upload = () => {
    setBusy(true);
    setResult(null);
    clearError();
    client
      .call(api.releaseUpload, { hosts: [h.name], file: chosen })
      .then((r) => {
        const x = r.hosts[0]!;
        setResult(x.error ? { ok: false, text: x.error } : { ok: true, text: `release ${x.release} signed by ${x.signer}: ${x.installed ? 'installed' : 'already installed'}` });
        setPreview(null);
        void qc.invalidateQueries({ queryKey: fleetKeys.all });
      }, fail('release/upload'))
      .finally(() => setBusy(false));
  };
  return (
    <div className="panel" data-testid="release-upload">
      <div className="form-row">
        <span>
          installed on {h.name}: <span className="mono" data-testid="host-releases">{h.releases.join(', ') || '—'}</span>
        </span>
        {releases.length === 0 ? (
          <span className="muted">{library.isPending ? 'loading…' : `no release tars in the console's library${library.data?.dir ? ` (${library.data.dir})` : ''}`}</span>
        ) : (
          <>
            <label className="field">
              <span className="field-label">Release to upload</span>
              <select data-testid="release-file" value={chosen} disabled={busy} onChange={(e) => (setFile(e.target.value), setPreview(null))}>
                {releases.map((r) => (
                  <option key={r.file} value={r.file}>
                    {r.release} ({r.kind}) — {r.file}
                  </option>
                ))}
              </select>
            </label>
            <button type="button" className="small" data-testid="release-preview" disabled={busy || h.conn !== 'connected'} onClick={showPreview}>
              Preview
            </button>
          </>
        )}
        <button type="button" className="small" data-testid="release-close" onClick={onDone}>
          Close
        </button>
      </div>
      {preview ? (
        <div data-testid="release-preview-lines">
          <pre className="mono small-text">{preview.join('\n')}</pre>
          <button type="button" className="primary small" data-testid="release-upload-go" disabled={busy} onClick={upload}>
            {busy ? 'Uploading…' : `Upload to ${h.name} and install`}
          </button>
        </div>
      ) : null}
      {result ? (
        <div className={result.ok ? 'good' : 'bad'} data-testid={result.ok ? 'release-upload-ok' : 'release-upload-error'} role={result.ok ? 'status' : 'alert'}>
          {result.text}
        </div>
      ) : null}
    </div>
  );
}

/** Install or upgrade the host package (agent, keeper) on this host: the package the console
 * carries, the preview of what is checked, copied and run, then the new agent's version. Works
 * on a host whose agent is not there yet: it needs SSH only. */
function AgentInstall({ h, onDone }: { h: HostRow; onDone: () => void }) {
  const qc = useQueryClient();
  const pkg = useQuery(releaseKeys.hostPackage());
  useReportQueryError(pkg, 'agent/package');
  const [preview, setPreview] = useState<string[] | null>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const p = pkg.data?.package ?? null;
  const fail = (method: string) => (err: unknown) => {
    const text = messageOf(err);
    reportError(method, text);
    setResult({ ok: false, text });
  };
  const showPreview = () => {
    setResult(null);
    clearError();
    client.call(api.agentPreview, { hosts: [h.name] }).then((x) => setPreview(x.lines), fail('agent/preview'));
  };
  const install = () => {
    setBusy(true);
    setResult(null);
    clearError();
    client
      .call(api.agentInstall, { hosts: [h.name] })
      .then((r) => {
        const x = r.hosts[0]!;
        setResult(x.error ? { ok: false, text: x.error } : { ok: true, text: `${r.version} installed; the agent answers, version ${x.agent_version}` });
        setPreview(null);
        void qc.invalidateQueries({ queryKey: fleetKeys.all });
      }, fail('agent/install'))
      .finally(() => setBusy(false));
  };
  return (
    <div className="panel" data-testid="agent-install">
      <div className="form-row">
        <span>
          agent on {h.name}: <span className="mono" data-testid="agent-install-current">{h.conn === 'connected' ? h.agent_version : `not answering${h.agent_version ? ` (last seen: ${h.agent_version})` : ''}`}</span>
        </span>
        {p ? (
          <>
            <span>
              package: <span className="mono" data-testid="agent-install-package">{p.package} {p.version} ({p.architecture})</span>
            </span>
            <button type="button" className="small" data-testid="agent-install-preview" disabled={busy} onClick={showPreview}>
              Preview
            </button>
          </>
        ) : (
          <span className="muted">{pkg.isPending ? 'loading…' : `no host package in the console's library${pkg.data?.dir ? ` (${pkg.data.dir})` : ''}`}</span>
        )}
        <button type="button" className="small" data-testid="agent-install-close" onClick={onDone}>
          Close
        </button>
      </div>
      {preview ? (
        <div data-testid="agent-install-preview-lines">
          <pre className="mono small-text">{preview.join('\n')}</pre>
          <button type="button" className="primary small" data-testid="agent-install-go" disabled={busy} onClick={install}>
            {busy ? 'Installing…' : `Install on ${h.name}`}
          </button>
        </div>
      ) : null}
      {result ? (
        <div className={result.ok ? 'good' : 'bad'} data-testid={result.ok ? 'agent-install-ok' : 'agent-install-error'} role={result.ok ? 'status' : 'alert'}>
          {result.text}
        </div>
      ) : null}
    </div>
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
      {releases ? <ReleaseUpload key={h.name} h={h} onDone={() => setReleases(false)} /> : null}
      {install ? <AgentInstall key={h.name} h={h} onDone={() => setInstall(false)} /> : null}
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
 * lost inside the dead process, and how long until a standby ran again. */
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
            <th>lost inside the dead</th>
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
