// The lab probe's view of a switch (when the host has a lab probe): frames lost on flows into a
// VM and the receive gaps around the switch, joined to the agent's own measurement.
import { CtlClient } from '../native/ctlClient.js';
import { measured, probe, ProbeEvent, type ProbeSummary } from '../native/probeProtocol.js';

/**
 * The lab probe's view of one switch: frames lost on flows arriving at the VM (counter delta)
 * and the largest receive gap on them that touches the switch window. Flows leaving the VM are
 * measured by the probe at their destination, on its own host.
 */
export class ProbeWatch {
  private readonly gaps: { start: number; end: number; us: number }[] = [];

  private constructor(
    private readonly ctl: CtlClient,
    private readonly vm: string,
    private readonly lostBefore: number,
  ) {}

  static async open(path: string | undefined, vm: string): Promise<ProbeWatch | null> {
    if (!path) return null;
    try {
      const ctl = await CtlClient.connect(path, 1000);
      const w = new ProbeWatch(ctl, vm, ProbeWatch.lost(await ctl.request(probe.statsShow, {}), vm));
      await ctl.subscribe((e) => {
        const g = ProbeEvent.safeParse(e);
        if (g.success && g.data.event === 'gap' && g.data.data.rx_vm === vm)
          w.gaps.push({ start: g.data.data.start_ns, end: g.data.data.end_ns, us: g.data.data.gap_us });
      });
      return w;
    } catch {
      return null; // no probe on this host: the measurement simply has no probe part
    }
  }

  private static lost(s: ProbeSummary, vm: string): number {
    return measured(s).filter((f) => f.dst === vm).reduce((n, f) => n + f.lost, 0);
  }

  async result(startNs: number, endNs: number): Promise<{ lost: number; gap_ms: number | null }> {
    await new Promise((r) => setTimeout(r, 150)); // frames from the switch arrive and gaps close
    try {
      // the probe counts a frame as lost while a later one has arrived before it: a non-zero
      // figure is sampled again until it stops falling, so a late frame is not called lost
      let lost = ProbeWatch.lost(await this.ctl.request(probe.statsShow, {}), this.vm) - this.lostBefore;
      for (let i = 0; i < 4 && lost > 0; i++) {
        await new Promise((r) => setTimeout(r, 250));
        const again = ProbeWatch.lost(await this.ctl.request(probe.statsShow, {}), this.vm) - this.lostBefore;
        if (again >= lost) break;
        lost = again;
      }
      const touching = this.gaps.filter((g) => g.start <= endNs + 2e6 && g.end >= startNs - 2e6);
      return { lost: Math.max(0, lost), gap_ms: touching.length ? Math.max(...touching.map((g) => g.us)) / 1000 : null };
    } finally {
      this.close();
    }
  }

  close(): void {
    this.ctl.close();
  }
}

