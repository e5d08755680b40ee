// Live view: pick a host, see one chart per VM (rates, switch markers, budget). Opening a host
// seeds the chart buffer with the core's recent history (host/traffic); pushes keep it going.
import { useQuery } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { api, type Campaign, type HostRow } from '../../../../protocol/console.js';
import type { Budget } from '../../../../protocol/measure.js';
import { chartBuffer } from '../chartBuffer.js';
import { client } from '../client.js';
import { reportError } from '../errors.js';
import { navigate, useReportQueryError } from '../hooks.js';
import { campaignKeys, fleetKeys } from '../queries.js';
import { routeHref } from '../route.js';
import { Empty, Field } from '../ui.js';
import { LiveChart } from './LiveChart.js';

/** The budget that applies to a host: its current campaign's, else that of the newest campaign
 * that included it (running or not). */
export function budgetForHost(host: string, row: HostRow | undefined, campaigns: readonly Campaign[]): { budget: Budget; campaign: string } | null {
  const own = row?.campaign ? campaigns.find((c) => c.id === row.campaign) : undefined;
  const c = own ?? [...campaigns].filter((x) => x.plan.spec.hosts.includes(host)).sort((a, b) => b.started.localeCompare(a.started))[0];
  return c ? { budget: c.plan.spec.budget, campaign: c.id } : null;
}

/** Every VM of a host as a live chart; seeds the buffer when the host changes. */
export function LiveCharts({ host }: { host: string }) {
  const fleet = useQuery(fleetKeys.list());
  const campaigns = useQuery(campaignKeys.list());
  const row = fleet.data?.find((h) => h.name === host);
  const [seeded, setSeeded] = useState<'loading' | 'done' | 'failed'>('loading');
  const [bufferVms, setBufferVms] = useState<string[]>([]);

  useEffect(() => {
    let live = true;
    setSeeded('loading');
    client
      .call(api.hostTraffic, { name: host })
      .then((r) => {
        chartBuffer.seed(host, r);
        if (live) setSeeded('done');
      })
      .catch((e: unknown) => {
        reportError('host/traffic', e);
        if (live) setSeeded('failed');
      });
    // VMs that only the buffer knows (pushed before the fleet row listed them)
    const t = setInterval(() => {
      const vms = chartBuffer.vms(host);
      setBufferVms((old) => (old.join() === vms.join() ? old : vms));
    }, 1000);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, [host]);

  const vms = [...new Set([...(row?.vms.map((v) => v.vm) ?? []), ...bufferVms])].sort();
  const budget = budgetForHost(host, row, campaigns.data ?? []);
  return (
    <div className="charts" data-testid={`charts-${host}`}>
      <div className="muted small-text">
        {seeded === 'loading' ? 'loading recent history…' : seeded === 'failed' ? 'recent history unavailable (see the error line); live data only.' : ''}
      </div>
      {vms.length === 0 ? <Empty>{host} has no VMs reported yet</Empty> : null}
      {vms.map((vm) => (
        <LiveChart key={`${host}/${vm}`} host={host} vm={vm} budget={budget ? { ms: budget.budget.max_gap_ms, campaign: budget.campaign } : null} />
      ))}
    </div>
  );
}

export function Live({ host }: { host: string | null }) {
  const fleet = useQuery(fleetKeys.list());
  useReportQueryError(fleet, 'fleet/list');
  const hosts = fleet.data ?? [];
  const chosen = host ?? hosts.find((h) => h.conn === 'connected')?.name ?? hosts[0]?.name ?? null;
  return (
    <section data-testid="live">
      <div className="toolbar">
        <h2>Live</h2>
        <Field label="Host">
          <select data-testid="live-host" value={chosen ?? ''} onChange={(e) => navigate(routeHref('live', e.target.value))}>
            {chosen === null ? <option value="">no hosts</option> : null}
            {hosts.map((h) => (
              <option key={h.name} value={h.name}>
                {h.name} ({h.conn}
                {h.active ? `, ${h.active.release}` : ''})
              </option>
            ))}
          </select>
        </Field>
        <span className="muted">received / sent frames per second per VM; markers: each switch with its measured gap</span>
      </div>
      {chosen ? <LiveCharts host={chosen} /> : <Empty>add hosts to the fleet to see their traffic</Empty>}
    </section>
  );
}
