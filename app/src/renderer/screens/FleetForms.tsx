// The fleet's two ways in: one host by hand (an address, or an alias of an ssh config) and an
// import (ssh config, Ansible inventory, fleet file) that says what it added and what it skipped
// and why.
import { useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api } from '../../../../protocol/console.js';
import { useAction } from '../hooks.js';
import { fleetKeys, upsertHost } from '../queries.js';
import { Field } from '../ui.js';

const defaultAgent = 'hitless-agent --stdio';
const nullIfBlank = (s: string) => (s.trim() === '' ? null : s.trim());

export function AddHostForm({ onDone }: { onDone: () => void }) {
  const qc = useQueryClient();
  const [mode, setMode] = useState<'address' | 'alias'>('address');
  const [f, setF] = useState({ name: '', host: '', port: '22', user: 'root', identity: '', alias: '', config: '', agent: defaultAgent, group: '' });
  const set = (k: keyof typeof f) => (e: { target: { value: string } }) => setF({ ...f, [k]: e.target.value });
  const add = useAction(api.fleetAdd, (row) => {
    upsertHost(qc, row);
    onDone();
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    add.mutate({
      name: f.name.trim(),
      ssh:
        mode === 'address'
          ? { host: f.host.trim(), port: Number(f.port), user: f.user.trim(), identity: nullIfBlank(f.identity) }
          : { alias: f.alias.trim(), config: nullIfBlank(f.config) },
      agent_command: f.agent,
      group: nullIfBlank(f.group),
    });
  };
  return (
    <form className="panel form-grid" onSubmit={submit} data-testid="add-form">
      <Field label="Name">
        <input data-testid="add-name" value={f.name} onChange={set('name')} placeholder="h1" />
      </Field>
      <Field label="Reach it by">
        <select data-testid="add-mode" value={mode} onChange={(e) => setMode(e.target.value === 'alias' ? 'alias' : 'address')}>
          <option value="address">address, port, user</option>
          <option value="alias">ssh config alias</option>
        </select>
      </Field>
      {mode === 'address' ? (
        <>
          <Field label="Host">
            <input data-testid="add-host" value={f.host} onChange={set('host')} placeholder="10.0.0.11" />
          </Field>
          <Field label="Port">
            <input data-testid="add-port" type="number" min={1} max={65535} value={f.port} onChange={set('port')} />
          </Field>
          <Field label="User">
            <input data-testid="add-user" value={f.user} onChange={set('user')} />
          </Field>
          <Field label="Identity file" hint="empty: ssh-agent / default keys">
            <input data-testid="add-identity" value={f.identity} onChange={set('identity')} placeholder="~/.ssh/id_ed25519" />
          </Field>
        </>
      ) : (
        <>
          <Field label="Alias">
            <input data-testid="add-alias" value={f.alias} onChange={set('alias')} />
          </Field>
          <Field label="ssh config" hint="empty: ~/.ssh/config">
            <input data-testid="add-config" value={f.config} onChange={set('config')} />
          </Field>
        </>
      )}
      <Field label="Agent command">
        <input data-testid="add-agent" value={f.agent} onChange={set('agent')} className="wide" />
      </Field>
      <Field label="Group" hint="rack/pair: never two of a group at once">
        <input data-testid="add-group" value={f.group} onChange={set('group')} />
      </Field>
      <div className="form-actions">
        <button type="submit" className="primary" data-testid="add-submit" disabled={add.isPending}>
          {add.isPending ? 'Adding…' : 'Add host'}
        </button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}

type ImportFrom = 'ssh-config' | 'ansible' | 'fleet-file';

export function ImportForm() {
  const qc = useQueryClient();
  const [from, setFrom] = useState<ImportFrom>('ssh-config');
  const [path, setPath] = useState('');
  const [agent, setAgent] = useState(defaultAgent);
  const imp = useAction(api.fleetImport, () => void qc.invalidateQueries({ queryKey: fleetKeys.all }));
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (from === 'ssh-config') imp.mutate({ from, path: nullIfBlank(path), agent_command: agent });
    else if (from === 'ansible') imp.mutate({ from, path: path.trim(), agent_command: agent });
    else imp.mutate({ from, path: path.trim() });
  };
  const r = imp.data;
  return (
    <form className="panel form-grid" onSubmit={submit} data-testid="import-form">
      <Field label="From">
        <select data-testid="imp-from" value={from} onChange={(e) => setFrom(e.target.value as ImportFrom)}>
          <option value="ssh-config">ssh config (Host blocks)</option>
          <option value="ansible">Ansible inventory (INI or YAML)</option>
          <option value="fleet-file">fleet file (JSON)</option>
        </select>
      </Field>
      <Field label="Path" hint={from === 'ssh-config' ? 'empty: ~/.ssh/config' : undefined}>
        <input data-testid="imp-path" value={path} onChange={(e) => setPath(e.target.value)} className="wide" />
      </Field>
      {from !== 'fleet-file' ? (
        <Field label="Agent command">
          <input data-testid="imp-agent" value={agent} onChange={(e) => setAgent(e.target.value)} className="wide" />
        </Field>
      ) : null}
      <div className="form-actions">
        <button type="submit" className="primary" data-testid="imp-submit" disabled={imp.isPending}>
          {imp.isPending ? 'Importing…' : 'Import'}
        </button>
      </div>
      {r ? (
        <div className="import-result" data-testid="imp-result">
          <div>
            added {r.added.length}: {r.added.join(', ') || '—'}
          </div>
          {r.skipped.length ? (
            <table className="grid compact">
              <thead>
                <tr>
                  <th>skipped</th>
                  <th>why</th>
                </tr>
              </thead>
              <tbody>
                {r.skipped.map((s) => (
                  <tr key={s.name} data-testid={`imp-skipped-${s.name}`}>
                    <td>{s.name}</td>
                    <td className="warn">{s.why}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <div className="muted">skipped none</div>
          )}
        </div>
      ) : null}
    </form>
  );
}
