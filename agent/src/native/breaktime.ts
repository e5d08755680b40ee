// Attributing receive gaps to events (RFC 6201 on a shared 2-core machine): a gap is charged to
// an event when it touches the event's window (plus a margin) on a flow into or out of the VM
// the event moved; every other gap over the probe's threshold is background — the same run's
// scheduler noise, reported beside the attributed figure.
import type { ProbeEvent } from './probeProtocol.js';

export interface EventWindow {
  vm: string;
  start_ns: number;
  end_ns: number;
}

export interface Attribution {
  /** per event: the largest receive gap (ms) on its VM's flows, or the threshold when none was over it */
  event_gap_ms: number[];
  /** events with no gap over the probe's threshold (their entry above is an upper bound) */
  below_threshold: number;
  /** gaps (ms) touching no event */
  background_gap_ms: number[];
}

export function attribute(events: ProbeEvent[], windows: EventWindow[], thresholdUs: number, marginNs = 2e6): Attribution {
  const gaps = events.flatMap((e) => (e.event === 'gap' ? [e.data] : []));
  const used = new Set<number>();
  const eventGap: number[] = [];
  let below = 0;
  for (const w of windows) {
    let worst = -1;
    gaps.forEach((g, i) => {
      const touches = g.start_ns <= w.end_ns + marginNs && g.end_ns >= w.start_ns - marginNs;
      const ofVm = g.src === w.vm || g.rx_vm === w.vm;
      if (touches && ofVm) {
        used.add(i);
        worst = Math.max(worst, g.gap_us / 1000);
      } else if (touches) {
        used.add(i); // a gap of another VM during the event window is not background either
      }
    });
    if (worst < 0) {
      below++;
      worst = thresholdUs / 1000;
    }
    eventGap.push(worst);
  }
  return {
    event_gap_ms: eventGap,
    below_threshold: below,
    background_gap_ms: gaps.filter((_, i) => !used.has(i)).map((g) => g.gap_us / 1000),
  };
}
