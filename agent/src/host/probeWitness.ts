// The lab probe as the agent's traffic witness (witness.ts): its VMs send numbered flows to
// each other, so around a switch it can count, per VM and direction, the frames that never
// arrived (sequence accounting: a frame that arrives late only fills what was missing), the
// largest receive gap touching the switch window, and the gaps of the same VMs' flows before
// it that touched no switch (background). The probe may start after the agent or restart: the
// connection is made when first needed and again after it drops.
import type { Direction, SeenGap, Witness } from '../../../protocol/measure.js';
import { touches } from '../../../protocol/measure.js';
import { probe, ProbeEvent, type ProbeSummary } from '../../../protocol/native/probe.js';
import { CtlClient } from '../native/ctlClient.js';
import type { LossSpan, SwitchWindow, TrafficWitness, WitnessSession, SpanBaseline } from './witness.js';

const SOURCE = 'lab probe';
/** how far back background gaps are kept and reported */
const BACKGROUND_NS = 30e9;
const MAX_GAPS = 4000;
/** frames of the switch land and the flows' missing counts settle: first look, then re-looks */
const SETTLE_MS = 150;
const RELOOK_MS = 100;
const RELOOKS = 8;

interface Gap {
  flow: string;
  src: string | undefined;
  rx: string | undefined;
  start_ns: number;
  end_ns: number;
  ms: number;
}

/** What one flow's counters say at one moment. */
interface FlowCount {
  src: string;
  dst: string;
  /** the receiving VM is one of this probe's */
  local: boolean;
  missing: number;
  late: number;
  refused: number;
  pps: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A flow's destination as the witness names it: a VM given by its MAC (a flow to a QEMU
 * guest, which sends it back to its source) is named as the VM. */
type Names = ReadonlyMap<string, string>;
const named = (dst: string, names: Names): string => names.get(dst.toLowerCase()) ?? dst;

function counts(s: ProbeSummary, names: Names): Map<string, FlowCount> {
  const out = new Map<string, FlowCount>();
  for (const f of s.flows) {
    const dst = named(f.dst, names);
    const key = `${f.src}>${dst}`;
    if (f.rx_side === 'local') out.set(key, { src: f.src, dst, local: true, missing: f.missing, late: f.late, refused: f.tx_refused, pps: f.pps ?? f.rate_rx_pps });
    else out.set(key, { src: f.src, dst, local: false, missing: 0, late: 0, refused: f.tx_refused, pps: f.pps });
  }
  return out;
}

export class ProbeWitness implements TrafficWitness {
  private ctl: CtlClient | null = null;
  private connecting: Promise<CtlClient | null> | null = null;
  private since = 0;
  private thresholdMs = 0;
  private readonly gaps: Gap[] = [];
  private readonly windows: SwitchWindow[] = [];

  private readonly names: Names;

  /** vms: the host's VMs; a flow to one of their MACs is a flow through that VM (a guest that
   * sends it back): its losses and gaps are that VM's, towards it. */
  constructor(
    private readonly path: string,
    vms: readonly { name: string; mac: string }[] = [],
  ) {
    this.names = new Map(vms.map((v) => [v.mac.toLowerCase(), v.name]));
  }

  private connect(): Promise<CtlClient | null> {
    if (this.ctl) return Promise.resolve(this.ctl);
    this.connecting ??= (async () => {
      try {
        const ctl = await CtlClient.connect(this.path, 1000);
        await ctl.subscribe((e) => {
          const g = ProbeEvent.safeParse(e);
          if (!g.success || g.data.event !== 'gap') return;
          const d = g.data.data;
          // a gap of a flow through a guest is the guest's (received back at its source)
          const through = this.names.get(d.flow.slice(d.flow.indexOf(':') + 1).toLowerCase());
          this.gaps.push({ flow: d.flow, src: d.src, rx: through ?? d.rx_vm, start_ns: d.start_ns, end_ns: d.end_ns, ms: d.gap_us / 1000 });
          if (this.gaps.length > MAX_GAPS) this.gaps.splice(0, this.gaps.length - MAX_GAPS);
        });
        void ctl.ended.then(() => {
          if (this.ctl === ctl) this.ctl = null;
        });
        this.ctl = ctl;
        this.since = Number(process.hrtime.bigint());
        return ctl;
      } catch {
        return null; // no probe (yet): the switch is measured by the datapath alone
      } finally {
        this.connecting = null;
      }
    })();
    return this.connecting;
  }

  private async sample(ctl: CtlClient): Promise<Map<string, FlowCount>> {
    const s = await ctl.request(probe.statsShow, {});
    this.thresholdMs = s.gap_us / 1000;
    return counts(s, this.names);
  }

  async begin(vms: readonly string[]): Promise<WitnessSession | null> {
    const ctl = await this.connect();
    if (!ctl) return null;
    let before: Map<string, FlowCount>;
    try {
      before = await this.sample(ctl);
    } catch {
      return null;
    }
    let cancelled = false;
    return {
      cancel: () => void (cancelled = true),
      end: async (w) => {
        await sleep(SETTLE_MS);
        if (cancelled) return new Map();
        const after = await this.settled();
        this.windows.push(w);
        return new Map(vms.flatMap((vm) => {
          const v = this.view(vm, vms, before, after, w);
          return v ? [[vm, v] as const] : [];
        }));
      },
    };
  }

  async span(vms: readonly string[]): Promise<LossSpan | null> {
    const ctl = await this.connect();
    if (!ctl) return null;
    const before = await this.sample(ctl).catch(() => null);
    if (!before) return null;
    const counts = Object.fromEntries([...before].map(([k, f]) => [k, { missing: f.missing, refused: f.refused, late: f.late }]));
    return this.resumeSpan(vms, { source: SOURCE, counts });
  }

  resumeSpan(vms: readonly string[], baseline: SpanBaseline): LossSpan {
    const before = new Map(Object.entries(baseline.counts));
    return {
      baseline,
      end: async () => {
        await sleep(SETTLE_MS);
        const after = await this.settled();
        let lost = 0;
        let seen = 0;
        for (const vm of vms) {
          const f = this.flowsOf(vm, vms, before, after);
          if (!f) continue;
          seen++;
          lost += [...f.rx, ...f.tx].reduce((n, x) => n + x.lost, 0);
        }
        return { source: SOURCE, vms: seen, lost };
      },
    };
  }

  /** A frame overtaken during a switch reads as missing until it lands: look again until the
   * missing counts stop moving. On the connection of the moment (the counts are the probe's
   * own, cumulative: one made since the first look counts the same). */
  private async settled(): Promise<Map<string, FlowCount>> {
    const ctl = await this.connect();
    if (!ctl) throw new Error('the probe is gone');
    let after = await this.sample(ctl);
    for (let i = 0; i < RELOOKS; i++) {
      await sleep(RELOOK_MS);
      const again = await this.sample(ctl);
      const same = [...again].every(([k, f]) => after.get(k)?.missing === f.missing);
      after = again;
      if (same) break;
    }
    return after;
  }

  /** A VM's flows between two samples: towards it (flows it receives), and from it (flows to
   * receivers outside moving: a local receiver's missing count, a remote one's ring refusals
   * at the sender), each with what it lost and what arrived late. null: the witness sees none. */
  private flowsOf(vm: string, moving: readonly string[], before: Map<string, Pick<FlowCount, 'missing' | 'refused' | 'late'>>, after: Map<string, FlowCount>) {
    const delta = (key: string, f: FlowCount) => {
      const b = before.get(key);
      return {
        lost: Math.max(0, f.local ? f.missing - (b?.missing ?? 0) : f.refused - (b?.refused ?? 0)),
        late: Math.max(0, f.late - (b?.late ?? 0)),
      };
    };
    const rx = [...after].filter(([, f]) => f.local && f.dst === vm);
    const tx = [...after].filter(([, f]) => f.src === vm && !(f.local && moving.includes(f.dst)));
    if (rx.length === 0 && tx.length === 0) return null;
    return { rx: rx.map(([k, f]) => ({ f, ...delta(k, f) })), tx: tx.map(([k, f]) => ({ f, ...delta(k, f) })) };
  }

  /** One VM's view of a switch: its flows (flowsOf), the largest gaps touching the window, and
   * the gaps before it that touched no switch. */
  private view(vm: string, moving: readonly string[], before: Map<string, FlowCount>, after: Map<string, FlowCount>, w: SwitchWindow): Witness | null {
    const flows = this.flowsOf(vm, moving, before, after);
    if (!flows) return null;
    const worst = (pred: (g: Gap) => boolean): number | null => {
      const hit = this.gaps.filter((g) => pred(g) && touches(g, w)).map((g) => g.ms);
      return hit.length ? Math.max(...hit) : null;
    };
    const direction = (d: { f: FlowCount; lost: number; late: number }[], gap: number | null): Direction | null => {
      if (d.length === 0) return null;
      return { flows: d.length, lost: d.reduce((n, x) => n + x.lost, 0), delayed: d.reduce((n, x) => n + x.late, 0), gap_ms: gap, offered_pps: d.reduce((n, x) => n + x.f.pps, 0) };
    };
    const localTx = new Set(flows.tx.filter((x) => x.f.local).map((x) => x.f.dst));
    const background: SeenGap[] = this.gaps
      .filter((g) => (g.rx === vm || g.src === vm) && g.end_ns < w.start_ns && g.start_ns >= w.start_ns - BACKGROUND_NS && !this.windows.some((x) => touches(g, x)))
      .slice(-64)
      .map((g) => ({ flow: g.flow, start_ns: g.start_ns, ms: g.ms }));
    return {
      source: SOURCE,
      threshold_ms: this.thresholdMs,
      rx: direction(flows.rx, worst((g) => g.rx === vm)),
      tx: direction(flows.tx, localTx.size ? worst((g) => g.src === vm && g.rx !== undefined && localTx.has(g.rx)) : null),
      background: { seconds: Math.min(BACKGROUND_NS, Math.max(0, w.start_ns - this.since)) / 1e9, gaps: background },
    };
  }

  close(): void {
    this.ctl?.close();
    this.ctl = null;
  }
}
