// The hosts' journals, the authoritative audit (DESIGN.md §15): the core fetches each host's
// journal from its agent and verifies its hash chain against the head it saw there last; this
// shows the verdicts (breaks and cut tails with the line), and exports the lines as JSON or CSV.
import { api } from '../../../../protocol/console.js';
import { downloadExport } from '../download.js';
import { fmtDateTime } from '../format.js';
import { useAction } from '../hooks.js';
import { ExportButtons } from '../ui.js';

export function HostJournals() {
  const check = useAction(api.auditHosts);
  const exp = useAction(api.auditHostsExport, (x) => downloadExport(x));
  const hosts = check.data?.hosts ?? null;
  return (
    <div data-testid="host-journals">
      <div className="toolbar">
        <h3>Host journals</h3>
        <span className="muted">each host's own record of what was done there and who signed it</span>
        <span className="spacer" />
        <button type="button" data-testid="host-journals-verify" disabled={check.isPending} onClick={() => check.mutate({})}>
          {check.isPending ? 'Verifying…' : 'Verify host journals'}
        </button>
        <ExportButtons testid="host-journals-export" pending={exp.isPending} onExport={(format) => exp.mutate({ format })} />
      </div>
      {hosts ? (
        <table className="grid" data-testid="host-journals-table">
          <thead>
            <tr>
              <th>host</th>
              <th>entries</th>
              <th>signed</th>
              <th>chain</th>
              <th>head</th>
              <th>seen before</th>
            </tr>
          </thead>
          <tbody>
            {hosts.map((h) => (
              <tr key={h.host} data-testid={`host-journal-${h.host}`} className={h.intact ? undefined : 'row-problem'}>
                <td>{h.host}</td>
                <td className="num">{h.entries}</td>
                <td className="num" title={h.approvers ? 'approvals verified by the host against its approvers file' : 'no approvers file on this host: its approvals are not verified there'}>
                  {h.signed}
                  {h.approvers ? '' : ' (not verified there)'}
                </td>
                <td className={h.intact ? 'good' : 'bad'} data-testid={`host-journal-${h.host}-verdict`}>
                  {h.error ? `not read: ${h.error}` : h.intact ? 'intact' : `BROKEN at line ${h.problem!.line}${h.problem!.seq !== null ? ` (seq ${h.problem!.seq})` : ''}: ${h.problem!.why}`}
                </td>
                <td className="mono">{h.head ? `seq ${h.head.seq} ${h.head.hash.slice(0, 12)}` : '-'}</td>
                <td className="mono" title={h.seen?.hash}>
                  {h.seen ? `seq ${h.seen.seq}, ${fmtDateTime(h.seen.at)}` : 'never'}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </div>
  );
}
