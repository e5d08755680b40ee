// The agent's JSON-RPC 2.0 endpoint over a stream pair (stdio under SSH). One wiring table
// lists every method; params are checked against the protocol's schema and a bad field is
// answered with JSON-RPC's InvalidParams naming it. Logs go to stderr; stdout is protocol only.
import { existsSync, statSync } from 'node:fs';
import { createMessageConnection, ErrorCodes, ResponseError, StreamMessageReader, StreamMessageWriter, type MessageConnection } from 'vscode-jsonrpc/node.js';
import type { z } from 'zod';
import { agent, AgentError, events } from '../../../protocol/agent.js';
import { type Request } from '../../../protocol/rpc.js';
import { listReleases } from './config.js';
import { installReleaseTar, ReleaseRefused } from './release.js';
import { approversPath } from './approvers.js';
import { kindOf } from './datapath.js';
import { alive } from './supervisor.js';
import { AgentFailure, HostAgent } from './upgrade.js';
import { keeperVersions, upgradeKeeper } from './keeperUpgrade.js';

const codes: Record<AgentFailure['code'], number> = {
  'invalid-state': AgentError.InvalidState,
  'unknown-release': AgentError.UnknownRelease,
  'unknown-vm': AgentError.UnknownVm,
  failed: AgentError.Failed,
  refused: AgentError.Refused,
};

export const AGENT_VERSION = '0.1.0';

export function serve(host: HostAgent, input: NodeJS.ReadableStream, output: NodeJS.WritableStream): MessageConnection {
  const conn = createMessageConnection(new StreamMessageReader(input), new StreamMessageWriter(output));

  function on<P extends z.ZodTypeAny, R extends z.ZodTypeAny>(req: Request<P, R>, fn: (p: z.output<P>) => Promise<z.input<R>>): void {
    conn.onRequest(req.method, async (raw: unknown) => {
      const p = req.params.safeParse(raw ?? {});
      if (!p.success) {
        const i = p.error.issues[0]!;
        throw new ResponseError(ErrorCodes.InvalidParams, `${req.method}: ${i.path.join('.') || 'params'}: ${i.message}`);
      }
      try {
        return req.result.parse(await fn(p.data));
      } catch (e) {
        if (e instanceof ResponseError) throw e;
        if (e instanceof AgentFailure) throw new ResponseError(codes[e.code], e.message);
        throw new ResponseError(AgentError.Failed, `${req.method}: ${(e as Error).message}`);
      }
    });
  }

  const info = async () => {
    const d = host.d;
    const kpid = host.sup.keeperPid();
    return {
      host: host.cfg.host,
      agent_version: AGENT_VERSION,
      root: host.root,
      releases: listReleases(host.root).map((r) => r.version),
      active: d.active ? { ...d.active, kind: kindOf(host.root, d.active.release) } : null,
      keeper: { pid: kpid, alive: alive(kpid) },
      state: d.state,
      supervisor: host.sup.supervision,
    };
  };

  // one line per method
  on(agent.hostInfo, info);
  on(agent.hostStart, (p) => host.serial(async () => (await host.start(p.release), info())));
  on(agent.vmList, async () => {
    const s = await host.status();
    return { vms: host.vms().map((v) => ({ vm: v.name, mac: v.mac, serving: s.vms.find((x) => x.vm === v.name)?.serving ?? null, connected: s.vms.find((x) => x.vm === v.name)?.connected ?? false })) };
  });
  on(agent.releaseList, async () => ({ releases: listReleases(host.root) }));
  on(agent.releaseInstall, (p) =>
    host.serial(async () => {
      if (!existsSync(p.tar) || !statSync(p.tar).isFile()) throw new ResponseError(AgentError.Refused, `${p.tar}: not a file on ${host.cfg.host}`);
      try {
        const v = await installReleaseTar(p.tar, host.root, host.cfg.release_signers);
        return { release: v.manifest.release, kind: v.manifest.kind, signer: v.signer, files: Object.keys(v.manifest.files ?? {}).length, installed: v.installed };
      } catch (e) {
        if (e instanceof ReleaseRefused) throw new ResponseError(AgentError.Refused, `${p.tar}: refused: ${e.message} (nothing installed)`);
        throw e;
      }
    }),
  );
  on(agent.genList, async () => {
    const d = host.d;
    const gens = [d.active && { ...d.active, role: 'active' as const }, d.target && { ...d.target, role: 'target' as const }].filter((g) => g !== null);
    return { gens: gens.map((g) => ({ ...g, pid: host.sup.genPid(g.gen), alive: host.sup.genAlive(g.gen) })) };
  });
  on(agent.upgradePlan, (p) => host.plan(p.release));
  on(agent.upgradePrepare, (p) => host.serial(async () => (await host.prepare(p.release, p.approve, p.mode, p.budget ?? null, p.campaign ?? null, p.approval), host.status())));
  on(agent.upgradeSwitch, (p) => host.serial(async () => (await host.switchVms(p.vms, p.approval), host.status())));
  on(agent.upgradeDeny, (p) => host.serial(async () => (await host.deny(p.vms, p.approval), host.status())));
  on(agent.upgradeRun, async () => {
    // the run goes on even if this connection drops: the reply only says it started
    const started = host.status();
    void host.serial(() => host.runAuto()).catch((e: Error) => console.error(`hitless-agent: auto run stopped: ${e.message}`));
    return started;
  });
  on(agent.upgradeRollback, (p) => host.serial(async () => (await host.rollback(p.vms), host.status())));
  on(agent.upgradeCommit, () => host.serial(async () => (await host.commit(), host.status())));
  on(agent.upgradeAbort, () => host.serial(async () => (await host.abort(), host.status())));
  on(agent.upgradeStatus, () => host.status());
  on(agent.keeperVersions, () => keeperVersions(host));
  on(agent.keeperUpgrade, (p) =>
    host.serial(async () => {
      await host.approval(p.approval, { kinds: ['keeper'], decision: 'approve', vms: [], release: null, campaign: null });
      return upgradeKeeper(host);
    }),
  );
  on(agent.journalRead, async (p) => ({ host: host.cfg.host, path: host.journal.path, lines: host.journal.lines().slice(p.from - 1), approvers: existsSync(approversPath(host.root)) }));
  on(agent.upgradeHistory, async (p) => ({
    switches: host.journal
      .entries()
      .flatMap((e) =>
        e.type === 'switched'
          ? [{ seq: e.seq, t: e.t, vm: e.vm, to: e.to, measurement: e.measurement }]
          : e.type === 'swapped'
            ? (e.measurements ?? []).map((m) => ({ seq: e.seq, t: e.t, vm: m.vm, to: m.to, measurement: m }))
            : [],
      )
      .slice(-p.limit),
  }));

  conn.listen();
  return conn;
}

export function notifier(getConn: () => MessageConnection | null) {
  return (status: z.infer<typeof events.state.params>, m?: z.infer<typeof events.measurement.params>['measurement']) => {
    const c = getConn();
    if (!c) return;
    // nobody may be listening any more (the SSH session dropped): the work goes on regardless
    try {
      void c.sendNotification(events.state.method, status).catch(() => undefined);
      if (m) void c.sendNotification(events.measurement.method, { host: status.host, measurement: m }).catch(() => undefined);
    } catch {
      /* connection closed */
    }
  };
}
