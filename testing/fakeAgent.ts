// An in-memory agent for the fast unit tests of the host-upgrade driver and the campaign engine
// (hostUpgrade.test.ts, campaignRun.test.ts): the agent protocol's state machine reduced to what
// the driver relies on — status, prepare, switch, run (with pushed state), commit, abort, the
// keeper's versions and upgrade — with
// each VM's switch measured as the test says and judged by protocol/measure.ts, as the real agent
// does. The real agent, keeper and datapaths are exercised by the integration tests.
import type { z } from 'zod';
import { agent, type UpgradeStatus } from '../protocol/agent.js';
import { figures, judge, type Budget, type Measurement } from '../protocol/measure.js';
import type { Request } from '../protocol/rpc.js';
import type { AgentLink } from '../app/src/core/hostUpgrade.js';

export interface VmScript {
  /** the break its switch will measure (ms) and the frames it will lose */
  breakMs?: number;
  lost?: number;
}

export class FakeAgent implements AgentLink {
  st: UpgradeStatus;
  readonly calls: string[] = [];
  private waiters = new Set<{ pred: (s: UpgradeStatus) => boolean; res: (s: UpgradeStatus) => void; rej: (e: Error) => void }>();
  private budget: Budget | null = null;
  private t = 0;
  /** when set, the connection drops at the next request of this method */
  dropAt: string | null = null;
  /** the host's keeper: the version running (its pid) and the one installed */
  keeper = { running: '0.1.0', pid: 100, installed: '0.1.0' };
  /** when set, keeper/upgrade fails with it (the running keeper keeps every session) */
  keeperRefuses: string | null = null;

  constructor(
    readonly host: string,
    vms: string[],
    readonly script: Record<string, VmScript> = {},
    release = '1.0.0',
  ) {
    this.st = {
      host,
      state: 'idle',
      mode: 'handoff',
      active: { gen: `${release}-1`, release },
      target: null,
      approve: 'each',
      budget: null,
      vms: vms.map((vm) => ({ vm, serving: `${release}-1`, connected: true, moved: false, measurement: null })),
      last_outcome: null,
      error: null,
      journal_seq: 1,
      standby: null,
      exposed: null,
      failovers: [],
      unmanaged: [],
      loss: null,
    };
  }

  private push(): void {
    const s = structuredClone(this.st);
    for (const w of [...this.waiters])
      if (w.pred(s)) {
        this.waiters.delete(w);
        w.res(s);
      }
  }

  /** The SSH connection drops: waiters fail, as HostConn's do. */
  drop(): void {
    for (const w of [...this.waiters]) w.rej(new Error(`${this.host}: the connection to its agent dropped`));
    this.waiters.clear();
  }

  until(pred: (st: UpgradeStatus) => boolean, signal: AbortSignal): Promise<UpgradeStatus> {
    return new Promise((res, rej) => {
      const w = { pred, res, rej };
      signal.addEventListener('abort', () => {
        this.waiters.delete(w);
        rej(new Error('stopped waiting'));
      });
      this.waiters.add(w);
    });
  }

  private move(vm: string): Measurement {
    const v = this.st.vms.find((x) => x.vm === vm)!;
    const sc = this.script[vm] ?? {};
    const parts = {
      vm, mode: this.st.mode, from: this.st.active!.gen, to: this.st.target!.gen, t_ns: ++this.t, window_us: 200, phases_us: null, passive_gap_us: (sc.breakMs ?? 0.5) * 1000, rings: [], anomalies: [], dropped: sc.lost ?? 0, witness: null,
    };
    const m: Measurement = { ...parts, ...figures(parts, this.budget) };
    v.moved = true;
    v.serving = this.st.target!.gen;
    v.measurement = m;
    return m;
  }

  async request<P extends z.ZodTypeAny, R extends z.ZodTypeAny>(req: Request<P, R>, params: z.input<P>): Promise<z.output<R>> {
    this.calls.push(req.method);
    if (this.dropAt === req.method) {
      this.dropAt = null;
      this.drop();
      throw new Error(`${this.host}: the connection to its agent dropped`);
    }
    await new Promise((r) => setImmediate(r));
    const p = req.params.parse(params) as Record<string, unknown>;
    const st = this.st;
    const k = this.keeper;
    if (req.method === agent.keeperVersions.method)
      return { running: { pid: k.pid, version: k.running, state_format: 1, sessions: st.vms.length }, installed: k.installed, due: k.running !== k.installed, predicted_pause_us: 22_760, basis: 'bench/run keeper-upgrade (control pause p50)' } as z.output<R>;
    if (req.method === agent.keeperUpgrade.method) {
      if (this.keeperRefuses) throw new Error(`the keeper was not upgraded: ${this.keeperRefuses}`);
      const from = { ...k };
      Object.assign(k, { running: k.installed, pid: k.pid + 1 });
      return { from_pid: from.pid, pid: k.pid, from_version: from.running, version: k.running, pause_us: 23_000, sessions: st.vms.length, vms: st.vms.length } as z.output<R>;
    }
    switch (req.method) {
      case agent.upgradeStatus.method:
        break;
      case agent.upgradePrepare.method: {
        if (st.state !== 'idle') throw new Error(`upgrade/prepare needs state idle; the host is ${st.state}`);
        const approve = p.approve as UpgradeStatus['approve'];
        this.budget = (p.budget as Budget | undefined) ?? (approve === 'each' ? null : approve.auto);
        Object.assign(st, { state: 'switching', mode: p.mode === 'swap' ? 'swap' : 'handoff', target: { gen: `${p.release}-2`, release: p.release }, approve, budget: this.budget, error: null });
        break;
      }
      case agent.upgradeSwitch.method:
        for (const vm of p.vms as string[]) if (!st.vms.find((v) => v.vm === vm)!.moved) this.move(vm);
        break;
      case agent.upgradeRun.method:
        // moves on its own after answering, pushing its state after each VM
        setImmediate(() => {
          for (const v of st.vms) {
            if (v.moved) continue;
            const m = this.move(v.vm);
            if (m.within_budget === false) {
              st.error = `${v.vm}: over budget: ${judge(m, this.budget!)}; stopped here`; // as the agent journals it
              return this.push();
            }
            this.push();
          }
        });
        break;
      case agent.upgradeCommit.method:
        Object.assign(st, { state: 'idle', active: st.target, target: null, last_outcome: 'committed' });
        for (const v of st.vms) v.moved = false;
        break;
      case agent.upgradeAbort.method:
      case agent.upgradeRollback.method:
        for (const v of st.vms) Object.assign(v, { moved: false, serving: st.active!.gen });
        Object.assign(st, { state: 'idle', target: null, last_outcome: req.method === agent.upgradeAbort.method ? 'aborted' : 'rolled-back' });
        break;
      default:
        throw new Error(`fake agent: ${req.method} not scripted`);
    }
    st.journal_seq++;
    return structuredClone(st) as z.output<R>;
  }
}
