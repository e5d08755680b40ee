// The window: header (operator, transport, may they approve), the connection banner, the nav
// with the pending-approvals badge, the error line, and the screen the hash route names.
import { useQuery } from '@tanstack/react-query';
import { useLayoutEffect } from 'react';
import { clearError } from './errors.js';
import { useLinkState, useReportQueryError, useRoute } from './hooks.js';
import { approvalKeys, sessionKeys } from './queries.js';
import { routeHref, type Screen } from './route.js';
import { Approvals } from './screens/Approvals.js';
import { Audit } from './screens/Audit.js';
import { Campaigns } from './screens/Campaigns.js';
import { Fleet } from './screens/Fleet.js';
import { HostDetail } from './screens/HostDetail.js';
import { Live } from './screens/Live.js';
import { Reports } from './screens/Reports.js';
import { Rollback } from './screens/Rollback.js';
import { Wizard } from './screens/Wizard.js';
import { ErrorLine } from './ui.js';

const nav: { screen: Screen; label: string }[] = [
  { screen: 'fleet', label: 'Fleet' },
  { screen: 'wizard', label: 'New campaign' },
  { screen: 'campaign', label: 'Campaigns' },
  { screen: 'approvals', label: 'Approvals' },
  { screen: 'live', label: 'Live' },
  { screen: 'reports', label: 'Reports' },
  { screen: 'rollback', label: 'Rollback' },
  { screen: 'audit', label: 'Audit' },
];

function Header() {
  const session = useQuery(sessionKeys.info());
  useReportQueryError(session, 'session/info');
  const s = session.data;
  return (
    <header className="top">
      <span className="brand">Hitless</span>
      <span className="muted">datapath upgrade console</span>
      <span className="spacer" />
      {s ? (
        <>
          <span data-testid="session-operator">
            operator <b>{s.operator}</b>
          </span>
          <span data-testid="session-transport" className="muted">
            {s.transport}
          </span>
          <span className="muted">v{s.version}</span>
          {s.may_approve ? (
            <span className="good">may approve</span>
          ) : (
            <span className="warn" data-testid="session-readonly">
              may not approve
            </span>
          )}
        </>
      ) : (
        <span className="muted">{session.isPending ? 'connecting…' : 'no session'}</span>
      )}
    </header>
  );
}

function Nav({ current }: { current: Screen }) {
  const approvals = useQuery(approvalKeys.list());
  useReportQueryError(approvals, 'approval/list');
  const n = approvals.data?.length ?? 0;
  const active = current === 'host' ? 'fleet' : current;
  return (
    <nav className="nav">
      {nav.map((item) => (
        <a key={item.screen} href={routeHref(item.screen)} data-testid={`nav-${item.screen}`} className={item.screen === active ? 'active' : undefined}>
          {item.label}
          {item.screen === 'approvals' ? (
            <span className={`badge${n > 0 ? ' hot' : ''}`} data-testid="nav-approvals-count">
              {n}
            </span>
          ) : null}
        </a>
      ))}
    </nav>
  );
}

export function App() {
  const route = useRoute();
  const link = useLinkState();
  // the error line describes the current screen's latest attempt; a layout effect, so it runs
  // before the new screen's (passive) effects report their queries' failures
  useLayoutEffect(() => clearError(), [route.screen, route.arg]);
  return (
    <div className="app">
      <Header />
      {link === 'lost' ? (
        <div className="banner" role="status" data-testid="conn-banner">
          console connection lost, retrying
        </div>
      ) : null}
      <Nav current={route.screen} />
      <ErrorLine />
      <main className="main">
        {route.screen === 'fleet' ? <Fleet /> : null}
        {route.screen === 'host' ? route.arg ? <HostDetail name={route.arg} /> : <Fleet /> : null}
        {route.screen === 'wizard' ? <Wizard /> : null}
        {route.screen === 'campaign' ? <Campaigns id={route.arg} /> : null}
        {route.screen === 'approvals' ? <Approvals /> : null}
        {route.screen === 'live' ? <Live host={route.arg} /> : null}
        {route.screen === 'reports' ? <Reports id={route.arg} /> : null}
        {route.screen === 'rollback' ? <Rollback /> : null}
        {route.screen === 'audit' ? <Audit /> : null}
      </main>
    </div>
  );
}
