// Subscribe once, at start-up, to everything the core pushes: snapshots go into the query cache,
// the high-rate series into the chart buffer. Also refetches everything after a reconnect.
import type { QueryClient } from '@tanstack/react-query';
import { pushes } from '../../../protocol/console.js';
import type { ChartBuffer } from './chartBuffer.js';
import type { ConsoleClient } from './client.js';
import { reportError } from './errors.js';
import { approvalKeys, fleetKeys, recordTransfer, upsertCampaign } from './queries.js';

export function wirePushes(client: ConsoleClient, qc: QueryClient, buffer: ChartBuffer): void {
  client.on(pushes.fleet, (p) => qc.setQueryData(fleetKeys.list().queryKey, p.hosts));
  client.on(pushes.campaign, (c) => upsertCampaign(qc, c));
  client.on(pushes.approvals, (p) => qc.setQueryData(approvalKeys.list().queryKey, p.approvals));
  client.on(pushes.traffic, (p) => buffer.addSamples(p.host, p.samples));
  client.on(pushes.measurement, (p) => buffer.addMeasurement(p.host, p.measurement, p.at));
  client.on(pushes.transfer, (t) => recordTransfer(qc, t));
  client.onProblem((what, msg) => reportError(what, msg));
  let wasLost = false;
  client.onState((s) => {
    if (s === 'lost') wasLost = true;
    if (s === 'open' && wasLost) {
      wasLost = false;
      void qc.invalidateQueries();
    }
  });
}
