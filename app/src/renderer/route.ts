// Hash routes: #/fleet, #/host/<name>, #/wizard, #/campaign/<id>, #/approvals, #/live/<host>,
// #/reports/<id>, #/rollback, #/audit. Pure: parse and format only; App.tsx listens to hashchange.

export type Screen = 'fleet' | 'host' | 'wizard' | 'campaign' | 'approvals' | 'live' | 'reports' | 'rollback' | 'audit';

export interface Route {
  readonly screen: Screen;
  /** host name, campaign id ... (the part after the screen), or null */
  readonly arg: string | null;
}

const screens: readonly Screen[] = ['fleet', 'host', 'wizard', 'campaign', 'approvals', 'live', 'reports', 'rollback', 'audit'];

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/');
  const screen = screens.find((s) => s === parts[0]) ?? 'fleet';
  let arg: string | null = null;
  if (parts[1]) {
    try {
      arg = decodeURIComponent(parts[1]);
    } catch {
      arg = null;
    }
  }
  return { screen, arg };
}

export function routeHref(screen: Screen, arg?: string | null): string {
  return `#/${screen}${arg ? `/${encodeURIComponent(arg)}` : ''}`;
}
