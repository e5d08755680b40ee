// What the console puts on hosts, for one host (its page) or a selection (the fleet table):
// Upload release (a signed release tar of the console's library, installed by each host's agent:
// release/upload) and Install agent (the library's host package, installed or upgraded over
// SSH: agent/install). Each shows the preview of what is checked, copied and run first, then
// per host the copy's progress (push/transfer) and the host's verdict. And the host's keeper:
// the installed one taking the running one's sessions over (keeper/upgrade).
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type ReactNode } from 'react';
import { api, type HostRow, type Transfer } from '../../../../protocol/console.js';
import { client } from '../client.js';
import { clearError, messageOf, reportError } from '../errors.js';
import { useReportQueryError } from '../hooks.js';
import { fleetKeys, releaseKeys, transferKey, transferKeys } from '../queries.js';

type Verdict = { ok: boolean; text: string };

/** A host's copy in progress ("42% of 27.5 MB"), or null before one started. */
function progressOf(t: Transfer | undefined): string | null {
  if (!t) return null;
  const pct = t.total > 0 ? Math.floor((t.sent / t.total) * 100) : 100;
  return `${pct}% of ${(t.total / 1e6).toFixed(1)} MB sent`;
}

/** The shared frame: which hosts, the preview, the go button, and a row per host. */
function Panel(props: {
  testid: string;
  op: Transfer['op'];
  hosts: HostRow[];
  head: ReactNode;
  current: (h: HostRow) => string;
  canPreview: boolean;
  preview: string[] | null;
  onPreview: () => void;
  go: string;
  busy: boolean;
  onGo: () => void;
  verdicts: Record<string, Verdict> | null;
  failure: string | null;
  onDone: () => void;
}) {
  const transfers = useQuery(transferKeys.all());
  const t = props.testid;
  return (
    <div className="panel" data-testid={t}>
      <div className="form-row">
        {props.head}
        <button type="button" className="small" data-testid={`${t}-preview`} disabled={props.busy || !props.canPreview} onClick={props.onPreview}>
          Preview
        </button>
        <button type="button" className="small" data-testid={`${t}-close`} onClick={props.onDone}>
          Close
        </button>
      </div>
      <table className="grid compact" data-testid={`${t}-hosts`}>
        <tbody>
          {props.hosts.map((h) => {
            const v = props.verdicts?.[h.name];
            return (
              <tr key={h.name} data-testid={`${t}-host-${h.name}`}>
                <td className="mono">{h.name}</td>
                <td className="mono" data-testid={`${t}-current-${h.name}`}>
                  {props.current(h)}
                </td>
                <td className="muted" data-testid={`${t}-progress-${h.name}`}>
                  {props.busy || v ? (progressOf(transfers.data?.[transferKey(props.op, h.name)]) ?? '') : ''}
                </td>
                <td className={v ? (v.ok ? 'good' : 'bad') : undefined} data-testid={v ? `${t}-${v.ok ? 'ok' : 'error'}-${h.name}` : undefined}>
                  {v?.text ?? ''}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {props.preview ? (
        <div data-testid={`${t}-preview-lines`}>
          <pre className="mono small-text wrap">{props.preview.join('\n')}</pre>
          <button type="button" className="primary small" data-testid={`${t}-go`} disabled={props.busy} onClick={props.onGo}>
            {props.busy ? 'Working…' : props.go}
          </button>
        </div>
      ) : null}
      {props.failure ? (
        <div className="bad" role="alert" data-testid={`${t}-failure`}>
          {props.failure}
        </div>
      ) : null}
    </div>
  );
}

/** Preview, then run, with the verdicts per host. */
function usePanelState() {
  const [preview, setPreview] = useState<string[] | null>(null);
  const [busy, setBusy] = useState(false);
  const [verdicts, setVerdicts] = useState<Record<string, Verdict> | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const fail = (method: string) => (err: unknown) => {
    const text = messageOf(err);
    reportError(method, text);
    setFailure(text);
  };
  const start = () => {
    setFailure(null);
    setVerdicts(null);
    clearError();
  };
  return { preview, setPreview, busy, setBusy, verdicts, setVerdicts, failure, fail, start };
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

/** Upload a release of the console's library to these hosts. */
export function ReleaseUpload({ hosts, onDone }: { hosts: HostRow[]; onDone: () => void }) {
  const qc = useQueryClient();
  const library = useQuery(releaseKeys.library());
  useReportQueryError(library, 'release/library');
  const [file, setFile] = useState('');
  const s = usePanelState();
  const releases = library.data?.releases ?? [];
  const chosen = file || releases[0]?.file || '';
  const names = hosts.map((h) => h.name);
  const head =
    releases.length === 0 ? (
      <span className="muted">{library.isPending ? 'loading…' : `no release tars in the console's library${library.data?.dir ? ` (${library.data.dir})` : ''}`}</span>
    ) : (
      <label className="field">
        <span className="field-label">Release to upload to {plural(hosts.length, 'host')}</span>
        <select data-testid="release-file" value={chosen} disabled={s.busy} onChange={(e) => (setFile(e.target.value), s.setPreview(null))}>
          {releases.map((r) => (
            <option key={r.file} value={r.file}>
              {r.release} ({r.kind}) — {r.file}
            </option>
          ))}
        </select>
      </label>
    );
  return (
    <Panel
      testid="release"
      op="release/upload"
      hosts={hosts}
      head={head}
      current={(h) => `installed: ${h.releases.join(', ') || '—'}`}
      canPreview={releases.length > 0 && hosts.every((h) => h.conn === 'connected')}
      preview={s.preview}
      onPreview={() => (s.start(), client.call(api.releasePreview, { hosts: names, file: chosen }).then((p) => s.setPreview(p.lines), s.fail('release/preview')))}
      go={`Upload to ${names.join(', ')} and install`}
      busy={s.busy}
      onGo={() => {
        s.start();
        s.setBusy(true);
        client
          .call(api.releaseUpload, { hosts: names, file: chosen })
          .then((r) => {
            s.setVerdicts(Object.fromEntries(r.hosts.map((x) => [x.host, x.error ? { ok: false, text: x.error } : { ok: true, text: `release ${x.release} signed by ${x.signer}: ${x.installed ? 'installed' : 'already installed'}` }])));
            s.setPreview(null);
            void qc.invalidateQueries({ queryKey: fleetKeys.all });
          }, s.fail('release/upload'))
          .finally(() => s.setBusy(false));
      }}
      verdicts={s.verdicts}
      failure={s.failure}
      onDone={onDone}
    />
  );
}

/** Install or upgrade the host package (agent, keeper) on these hosts; needs SSH only, so it
 * works on a host whose agent is not there yet. */
export function AgentInstall({ hosts, onDone }: { hosts: HostRow[]; onDone: () => void }) {
  const qc = useQueryClient();
  const pkg = useQuery(releaseKeys.hostPackage());
  useReportQueryError(pkg, 'agent/package');
  const s = usePanelState();
  const p = pkg.data?.package ?? null;
  const names = hosts.map((h) => h.name);
  const head = p ? (
    <span>
      package: <span className="mono" data-testid="agent-package">{p.package} {p.version} ({p.architecture})</span>
    </span>
  ) : (
    <span className="muted">{pkg.isPending ? 'loading…' : `no host package in the console's library${pkg.data?.dir ? ` (${pkg.data.dir})` : ''}`}</span>
  );
  return (
    <Panel
      testid="agent-install"
      op="agent/install"
      hosts={hosts}
      head={head}
      current={(h) => `agent ${h.conn === 'connected' ? h.agent_version : `not answering${h.agent_version ? ` (last seen: ${h.agent_version})` : ''}`}`}
      canPreview={p !== null}
      preview={s.preview}
      onPreview={() => (s.start(), client.call(api.agentPreview, { hosts: names }).then((x) => s.setPreview(x.lines), s.fail('agent/preview')))}
      go={`Install on ${names.join(', ')}`}
      busy={s.busy}
      onGo={() => {
        s.start();
        s.setBusy(true);
        client
          .call(api.agentInstall, { hosts: names })
          .then((r) => {
            s.setVerdicts(Object.fromEntries(r.hosts.map((x) => [x.host, x.error ? { ok: false, text: x.error } : { ok: true, text: `${r.version} installed; the agent answers, version ${x.agent_version}` }])));
            s.setPreview(null);
            void qc.invalidateQueries({ queryKey: fleetKeys.all });
          }, s.fail('agent/install'))
          .finally(() => s.setBusy(false));
      }}
      verdicts={s.verdicts}
      failure={s.failure}
      onDone={onDone}
    />
  );
}

/** The host's keeper: the one running and the one its host package installed, and replacing
 * the first by the second under the live sessions (keeper/upgrade): asked, then confirmed. */
export function KeeperUpgrade({ host }: { host: HostRow }) {
  const qc = useQueryClient();
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const [said, setSaid] = useState<Verdict | null>(null);
  const k = host.keeper;
  if (!k) return <div className="muted small-text" data-testid="host-keeper">keeper: {host.conn === 'connected' ? 'its agent cannot say (from before keeper upgrades)' : '—'}</div>;
  const running = k.running ? `${k.running.version} (pid ${k.running.pid}, ${plural(k.running.sessions, 'session')})` : 'none running';
  const go = () => {
    setBusy(true);
    setSaid(null);
    clearError();
    client
      .call(api.keeperUpgrade, { host: host.name })
      .then(
        (r) => {
          setSaid({ ok: true, text: `keeper ${r.from_version} (pid ${r.from_pid}) handed ${plural(r.sessions, 'session')} to ${r.version} (pid ${r.pid}); the VMs' control messages waited ${r.pause_us === null ? '?' : (r.pause_us / 1000).toFixed(1)} ms` });
          void qc.invalidateQueries({ queryKey: fleetKeys.all });
        },
        (err: unknown) => {
          const text = messageOf(err);
          reportError('keeper/upgrade', text);
          setSaid({ ok: false, text });
        },
      )
      .finally(() => (setBusy(false), setAsking(false)));
  };
  return (
    <div className="small-text" data-testid="host-keeper">
      <span className="muted">
        keeper: <span data-testid="host-keeper-running">{running}</span>; installed <span data-testid="host-keeper-installed">{k.installed ?? '—'}</span>
        {k.due ? <strong className="warn"> · upgrade due</strong> : null}
      </span>{' '}
      {k.running && !asking ? (
        <button type="button" className="small" data-testid="host-keeper-upgrade" disabled={busy} onClick={() => setAsking(true)}>
          {k.due ? `Upgrade keeper to ${k.installed}` : 'Replace keeper'}
        </button>
      ) : null}
      {asking ? (
        <div className="panel" data-testid="host-keeper-confirm">
          <p>
            The running keeper hands its {plural(k.running?.sessions ?? 0, 'session')} to the installed keeper {k.installed}: the VMs keep forwarding and see no link change; their control messages wait for the handover (tens of ms). A keeper that cannot take over is refused and the running one keeps every session.
          </p>
          <button type="button" data-testid="host-keeper-go" disabled={busy} onClick={go}>
            {busy ? 'Replacing…' : `Replace the keeper on ${host.name}`}
          </button>{' '}
          <button type="button" className="small" disabled={busy} onClick={() => setAsking(false)}>
            Cancel
          </button>
        </div>
      ) : null}
      {said ? (
        <div className={said.ok ? 'good' : 'bad'} data-testid="host-keeper-result">
          {said.text}
        </div>
      ) : null}
    </div>
  );
}
