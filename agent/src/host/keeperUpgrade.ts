// Replacing the host's keeper under its live sessions (DESIGN.md §14; the keeper's side is
// native/src/keeper/upgrade.c). The host package puts a new keeper binary at
// <root>/bin/hitless-keeper; the running keeper goes on running the old one until the operator
// upgrades it: the agent asks the running keeper to hand every session, socket and generation
// to the installed binary. The VMs see nothing (packets never pass through the keeper); their
// control messages wait for the pause (the reply's pause_us). A binary that cannot take over is
// refused by the running keeper, which keeps every session.
// Journalled (keeper-upgrade, then keeper-upgraded or keeper-upgrade-failed); an agent stopped
// in between finds out from the keeper that runs which way it went.
import { execFile } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { keeper } from '../../../protocol/native/keeper.js';
import type { KeeperVersions, KeeperUpgraded } from '../../../protocol/agent.js';
import { AgentFailure } from './derive.js';
import { predictKeeperPause } from './modes.js';
import { alive, KEEPER_UNIT, unitMainPid } from './supervisor.js';
import type { FailoverHost } from './failover.js';

/** The keeper binary the host package installed: its real path and version (--version). */
export function installedKeeper(root: string): Promise<{ path: string; version: string } | null> {
  let path: string;
  try {
    path = realpathSync(join(root, 'bin', 'hitless-keeper'));
  } catch {
    return Promise.resolve(null);
  }
  return new Promise((res) =>
    execFile(path, ['--version'], { timeout: 5000, encoding: 'utf8' }, (e, out) => {
      const m = /^hitless-keeper (\S+)/.exec(out);
      res(e || !m ? null : { path, version: m[1]! });
    }),
  );
}

/** The running keeper and the installed one: an upgrade is due when their versions differ. */
export async function keeperVersions(h: FailoverHost): Promise<KeeperVersions> {
  const installed = await installedKeeper(h.sup.root);
  const pid = h.sup.keeperPid();
  const running = alive(pid) ? await (await h.sup.keeper()).request(keeper.keeperInfo, {}).catch(() => null) : null;
  const own = h.journal.entries().flatMap((e) => (e.type === 'keeper-upgraded' && e.pause_us !== null ? [e.pause_us] : []));
  return {
    running: running ? { pid: running.pid, version: running.version, state_format: running.state_format, sessions: running.sessions } : null,
    installed: installed?.version ?? null,
    due: running !== null && installed !== null && running.version !== installed.version,
    ...predictKeeperPause(own),
  };
}

/** Hand the running keeper's sessions to the installed keeper binary (run inside serial()). */
export async function upgradeKeeper(h: FailoverHost): Promise<KeeperUpgraded> {
  const bin = await installedKeeper(h.sup.root);
  if (!bin) throw new AgentFailure('failed', `no keeper binary at ${h.sup.root}/bin/hitless-keeper that runs (--version): install the host package`);
  const fromPid = h.sup.keeperPid();
  if (!alive(fromPid)) throw new AgentFailure('invalid-state', 'no keeper runs on this host: the installed one starts with the host (host/start)');
  const k = await h.sup.keeper();
  const from = await k.request(keeper.keeperInfo, {});
  h.journal.append({ type: 'keeper-upgrade', from_pid: from.pid, from_version: from.version, to_version: bin.version, binary: bin.path });
  let r;
  try {
    r = await k.request(keeper.keeperUpgrade, { binary: bin.path });
  } catch (e) {
    const error = (e as Error).message;
    h.journal.append({ type: 'keeper-upgrade-failed', error });
    throw new AgentFailure('failed', `the keeper was not upgraded: ${error}`);
  }
  // the old keeper exits once it has answered; the supervisor connects to the new one by its pid
  const k2 = await h.sup.keeper();
  const now = await k2.request(keeper.keeperInfo, {});
  // under systemd the old keeper made the new one the unit's main process before it exited
  // (MAINPID=): were it not, the unit's next stop or restart would miss the keeper that serves
  if (h.sup.supervision.mode === 'systemd') {
    const main = await unitMainPid(KEEPER_UNIT);
    if (main !== now.pid) {
      const error = `keeper ${now.version} (pid ${now.pid}) serves every session, but systemd names pid ${main ?? '?'} as ${KEEPER_UNIT}'s main process: see journalctl -u ${KEEPER_UNIT}`;
      h.journal.append({ type: 'keeper-upgrade-failed', error });
      throw new AgentFailure('failed', error);
    }
  }
  const done: KeeperUpgraded = { from_pid: from.pid, pid: now.pid, from_version: from.version, version: now.version, pause_us: r.pause_us, sessions: r.sessions, vms: r.vms };
  h.journal.append({ type: 'keeper-upgraded', ...done, recovered: false });
  console.error(`hitless-agent: keeper ${from.version} (pid ${from.pid}) handed ${r.sessions} sessions to ${now.version} (pid ${now.pid}); control paused ${(r.pause_us / 1000).toFixed(1)} ms`);
  return done;
}

/** An agent stopped between keeper-upgrade and its outcome: the keeper that runs says which. */
export async function recoverKeeperUpgrade(h: FailoverHost): Promise<void> {
  const last = [...h.journal.entries()].reverse().find((e) => e.type === 'keeper-upgrade' || e.type === 'keeper-upgraded' || e.type === 'keeper-upgrade-failed');
  if (last?.type !== 'keeper-upgrade') return;
  const pid = h.sup.keeperPid();
  const info = alive(pid) ? await (await h.sup.keeper()).request(keeper.keeperInfo, {}).catch(() => null) : null;
  if (info && info.pid !== last.from_pid && info.version === last.to_version) {
    h.journal.append({ type: 'keeper-upgraded', from_pid: last.from_pid, pid: info.pid, from_version: last.from_version, version: info.version, pause_us: null, sessions: info.sessions, vms: info.vms, recovered: true });
  } else {
    h.journal.append({ type: 'keeper-upgrade-failed', error: info ? `the agent stopped during it; keeper ${info.version} (pid ${info.pid}) runs` : 'the agent stopped during it; no keeper runs' });
  }
}
