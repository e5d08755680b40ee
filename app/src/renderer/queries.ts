// TanStack Query key factories, one per feature: each queryOptions() keeps the key, the fetcher
// and the staleTime together. Data the core pushes (fleet, campaigns, approvals) is fetched once
// and then kept fresh by pushes.ts through setQueryData, hence staleTime Infinity.
import { queryOptions, type QueryClient } from '@tanstack/react-query';
import { api, type Campaign, type HostRow, type Transfer } from '../../../protocol/console.js';
import { client } from './client.js';

export const sessionKeys = {
  info: () => queryOptions({ queryKey: ['session', 'info'] as const, queryFn: () => client.call(api.session, {}), staleTime: Infinity }),
};

export const fleetKeys = {
  all: ['fleet'] as const,
  list: () =>
    queryOptions({
      queryKey: [...fleetKeys.all, 'list'] as const,
      queryFn: async () => (await client.call(api.fleetList, {})).hosts,
      staleTime: Infinity,
    }),
};

export const releaseKeys = {
  all: ['releases'] as const,
  /** the console's release library (the tars it can upload to hosts) */
  library: () => queryOptions({ queryKey: [...releaseKeys.all, 'library'] as const, queryFn: () => client.call(api.releaseLibrary, {}) }),
  /** the host package of the console's library (what Install agent puts on a host) */
  hostPackage: () => queryOptions({ queryKey: [...releaseKeys.all, 'host-package'] as const, queryFn: () => client.call(api.agentPackage, {}) }),
};

/** Copies to hosts under way or done this session (push/transfer), by op and host. */
export const transferKeys = {
  all: () => queryOptions({ queryKey: ['transfers'] as const, queryFn: async (): Promise<Record<string, Transfer>> => ({}), staleTime: Infinity }),
};
export const transferKey = (op: Transfer['op'], host: string) => `${op} ${host}`;

export function recordTransfer(qc: QueryClient, t: Transfer): void {
  qc.setQueryData(transferKeys.all().queryKey, (old) => ({ ...(old ?? {}), [transferKey(t.op, t.host)]: t }));
}

export const campaignKeys = {
  all: ['campaigns'] as const,
  list: () =>
    queryOptions({
      queryKey: [...campaignKeys.all, 'list'] as const,
      queryFn: async () => (await client.call(api.campaignList, {})).campaigns,
      staleTime: Infinity,
    }),
};

/** A campaign's report as the core computes it (report/get): refetched whenever that campaign
 * changes (upsertCampaign), so the screen shows the figures the exports would contain. */
export const reportKeys = {
  all: ['report'] as const,
  get: (campaign: string) =>
    queryOptions({
      queryKey: [...reportKeys.all, campaign] as const,
      queryFn: () => client.call(api.reportGet, { campaign }),
      staleTime: Infinity,
    }),
};

export const approvalKeys = {
  all: ['approvals'] as const,
  list: () =>
    queryOptions({
      queryKey: [...approvalKeys.all, 'list'] as const,
      queryFn: async () => (await client.call(api.approvalList, {})).approvals,
      staleTime: Infinity,
    }),
};

export const auditKeys = {
  all: ['audit'] as const,
  list: (limit: number) =>
    queryOptions({
      queryKey: [...auditKeys.all, 'list', limit] as const,
      queryFn: async () => (await client.call(api.auditList, { limit })).entries,
      staleTime: 5_000,
    }),
};

/** Put a host row (from host/connect, hostkey/decide, fleet/add) into the fleet list. */
export function upsertHost(qc: QueryClient, row: HostRow): void {
  qc.setQueryData(fleetKeys.list().queryKey, (old) => {
    if (!old) return old;
    const i = old.findIndex((h) => h.name === row.name);
    return i < 0 ? [...old, row] : old.map((h, j) => (j === i ? row : h));
  });
}

export function removeHost(qc: QueryClient, name: string): void {
  qc.setQueryData(fleetKeys.list().queryKey, (old) => old?.filter((h) => h.name !== name));
}

/** Put a campaign (pushed, started or controlled) into the campaign list; if the list was never
 * fetched, fetch it rather than invent a one-item list. Its report, if shown, is fetched again. */
export function upsertCampaign(qc: QueryClient, c: Campaign): void {
  void qc.invalidateQueries({ queryKey: reportKeys.get(c.id).queryKey });
  const key = campaignKeys.list().queryKey;
  if (!qc.getQueryData(key)) {
    void qc.invalidateQueries({ queryKey: key });
    return;
  }
  qc.setQueryData(key, (old) => {
    if (!old) return old;
    const i = old.findIndex((x) => x.id === c.id);
    return i < 0 ? [...old, c] : old.map((x, j) => (j === i ? c : x));
  });
}
