// Per-VM traffic rates for the console's live view, from the datapath's own counters: each
// sample reads every running generation's stats and turns the counter deltas since the last
// sample into frames/s. Counters are per generation, so a VM moving between generations (or a
// generation stopping) never shows as a negative or doubled rate: a delta is only taken for a
// generation seen in both samples, and an interval in which a generation went gives no rate.
import type { TrafficVm } from '../../../protocol/agent.js';
import type { GenRef } from './derive.js';
import type { HostAgent } from './upgrade.js';

interface Counters {
  rx: number; // frames the datapath put into the VM's rings (the VM received them)
  tx: number; // frames the datapath took from the VM
  drops: number;
}

export class TrafficMeter {
  private last = new Map<string, { t: number; vms: Map<string, Counters> }>();

  constructor(private readonly host: HostAgent) {}

  /** Rates since the previous call (empty on the first). */
  async sample(): Promise<TrafficVm[]> {
    const d = this.host.d;
    const gens = [d.active, d.target].filter((g): g is GenRef => !!g && this.host.sup.genAlive(g.gen));
    const now = new Map<string, { t: number; vms: Map<string, Counters> }>();
    for (const g of new Map(gens.map((x) => [x.gen, x])).values()) {
      try {
        const c = await this.host.datapath(g.release).counters(g.gen);
        now.set(g.gen, { t: performance.now(), vms: new Map([...c].map(([vm, v]) => [vm, { rx: v.tx, tx: v.rx, drops: v.drops }])) });
      } catch {
        /* the generation is going away: it is left out of this sample */
      }
    }
    // a generation that went since the last sample (stopped, or died) took its share of the
    // interval with it: no rate for this interval rather than a false dip
    if ([...this.last.keys()].some((g) => !now.has(g))) {
      this.last = now;
      return [];
    }
    const sum = new Map<string, TrafficVm>(this.host.vms().map((v) => [v.name, { vm: v.name, rx_pps: 0, tx_pps: 0, dropped: 0 }]));
    let any = false;
    for (const [g, cur] of now) {
      const prev = this.last.get(g);
      if (!prev) continue;
      const dt = (cur.t - prev.t) / 1000;
      if (dt <= 0) continue;
      any = true;
      for (const [vm, c] of cur.vms) {
        const p = prev.vms.get(vm);
        const out = sum.get(vm);
        if (!p || !out) continue;
        out.rx_pps += Math.max(0, c.rx - p.rx) / dt;
        out.tx_pps += Math.max(0, c.tx - p.tx) / dt;
        out.dropped += Math.max(0, c.drops - p.drops);
      }
    }
    this.last = now;
    return any ? [...sum.values()].map((v) => ({ ...v, rx_pps: Math.round(v.rx_pps), tx_pps: Math.round(v.tx_pps) })) : [];
  }
}
