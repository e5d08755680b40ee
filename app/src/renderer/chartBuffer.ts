// The live charts' data: per host and VM a time-bounded ring of rate samples (about ten minutes)
// and the handoff markers (one per measured switch). High-rate series live here, not in the
// query cache; charts poll `version()` and redraw at most twice a second. Pure: no DOM.
//
// Marker time: every switch comes with `at` (epoch ms: when the console, or from the host's
// journal the agent, saw it); the marker is drawn there. A Measurement's own t_ns is the host's
// monotonic clock and only identifies the switch (vm@t_ns), so seed and push mark it once.
import type { Mark, TrafficSample } from '../../../protocol/console.js';
import type { Measurement } from '../../../protocol/measure.js';

export interface Sample {
  readonly t: number;
  readonly rx: number;
  readonly tx: number;
  readonly dropped: number;
}

export interface ChartMark {
  /** wall-clock ms where the marker is drawn (the switch's `at`) */
  readonly t: number;
  readonly vm: string;
  /** the VM's break (ms), as the agent measured it */
  readonly breakMs: number;
  /** frames the VM lost in it (protocol/measure.ts lost) */
  readonly lost: number;
  readonly from: string;
  readonly to: string;
  readonly withinBudget: boolean | null;
  /** the host-clock time of the switch: with vm, what identifies it */
  readonly tNs: number;
}

export interface SeriesView {
  readonly t: number[];
  readonly rx: number[];
  readonly tx: number[];
  readonly marks: ChartMark[];
}

export interface ChartBufferOptions {
  /** how much history a series keeps, ms (default 10 min) */
  readonly windowMs?: number;
  /** hard cap on samples per VM whatever their spacing */
  readonly maxSamples?: number;
  /** hard cap on markers per VM */
  readonly maxMarks?: number;
}

interface Series {
  samples: Sample[];
  marks: ChartMark[];
}

interface HostState {
  series: Map<string, Series>;
  version: number;
}

export class ChartBuffer {
  private readonly hosts = new Map<string, HostState>();
  readonly windowMs: number;
  readonly maxSamples: number;
  readonly maxMarks: number;

  constructor(opts: ChartBufferOptions = {}) {
    this.windowMs = opts.windowMs ?? 10 * 60_000;
    this.maxSamples = opts.maxSamples ?? 6000;
    this.maxMarks = opts.maxMarks ?? 500;
  }

  private host(name: string): HostState {
    let h = this.hosts.get(name);
    if (!h) {
      h = { series: new Map(), version: 0 };
      this.hosts.set(name, h);
    }
    return h;
  }

  private series(h: HostState, vm: string): Series {
    let s = h.series.get(vm);
    if (!s) {
      s = { samples: [], marks: [] };
      h.series.set(vm, s);
    }
    return s;
  }

  /** Drop what fell out of the window (relative to the series' newest sample) or over the caps. */
  private trim(s: Series): void {
    const newest = Math.max(s.samples.at(-1)?.t ?? -Infinity, s.marks.at(-1)?.t ?? -Infinity);
    const cutoff = newest - this.windowMs;
    let drop = 0;
    while (drop < s.samples.length && s.samples[drop]!.t < cutoff) drop++;
    drop = Math.max(drop, s.samples.length - this.maxSamples);
    if (drop > 0) s.samples.splice(0, drop);
    let mdrop = 0;
    while (mdrop < s.marks.length && s.marks[mdrop]!.t < cutoff) mdrop++;
    mdrop = Math.max(mdrop, s.marks.length - this.maxMarks);
    if (mdrop > 0) s.marks.splice(0, mdrop);
  }

  /** Add rate samples (any VMs of one host). In-order samples append; an older one is inserted
   * in place; a sample at a time the series already has is ignored (seed and push overlap). */
  addSamples(host: string, samples: readonly TrafficSample[]): void {
    if (samples.length === 0) return;
    const h = this.host(host);
    const touched = new Set<Series>();
    for (const x of samples) {
      if (!Number.isFinite(x.t)) continue;
      const s = this.series(h, x.vm);
      const sample: Sample = { t: x.t, rx: x.rx_pps, tx: x.tx_pps, dropped: x.dropped };
      const last = s.samples.at(-1);
      if (!last || x.t > last.t) s.samples.push(sample);
      else {
        const i = lowerBound(s.samples, x.t);
        if (s.samples[i]?.t === x.t) continue;
        s.samples.splice(i, 0, sample);
      }
      touched.add(s);
    }
    for (const s of touched) this.trim(s);
    h.version++;
  }

  /** Mark one switch at `at` unless this host already has it; true when it was added. */
  private place(h: HostState, m: Measurement, at: number): boolean {
    if (!Number.isFinite(at)) return false;
    const s = this.series(h, m.vm);
    // a switch is identified by vm@t_ns: seed and pushes overlap, each switch is marked once
    if (s.marks.some((x) => x.tNs === m.t_ns)) return false;
    const mark: ChartMark = { t: at, vm: m.vm, breakMs: m.break_ms, lost: m.lost, from: m.from, to: m.to, withinBudget: m.within_budget, tNs: m.t_ns };
    s.marks.splice(lowerBound(s.marks, at), 0, mark);
    this.trim(s);
    return true;
  }

  /** A measurement pushed live (push/measurement), marked at its `at`; the same switch twice is
   * one mark. */
  addMeasurement(host: string, m: Measurement, at: number): void {
    const h = this.host(host);
    if (this.place(h, m, at)) h.version++;
  }

  /** What host/traffic returned when a host's live view opened: history samples and the
   * switches the console saw, merged with whatever pushes already delivered. */
  seed(host: string, data: { samples: readonly TrafficSample[]; marks: readonly Mark[] }): void {
    this.addSamples(host, data.samples);
    const h = this.host(host);
    let added = false;
    for (const x of data.marks) added = this.place(h, x.measurement, x.at) || added;
    if (added) h.version++;
  }

  /** The samples and markers to plot for one VM (copies; safe to hand to the chart). */
  view(host: string, vm: string): SeriesView {
    const s = this.hosts.get(host)?.series.get(vm);
    if (!s) return { t: [], rx: [], tx: [], marks: [] };
    return { t: s.samples.map((x) => x.t), rx: s.samples.map((x) => x.rx), tx: s.samples.map((x) => x.tx), marks: [...s.marks] };
  }

  /** VMs this host has data for, sorted by name. */
  vms(host: string): string[] {
    return [...(this.hosts.get(host)?.series.keys() ?? [])].sort();
  }

  /** Bumped on every change to the host's data; charts redraw when it moved. */
  version(host: string): number {
    return this.hosts.get(host)?.version ?? 0;
  }
}

/** First index whose t is >= t (array sorted by t). */
function lowerBound(xs: readonly { t: number }[], t: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]!.t < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The buffer the renderer's pushes feed and its charts read. */
export const chartBuffer = new ChartBuffer();

export interface PlotData {
  /** x in seconds (uPlot's time scale): sample times and marker times, merged and sorted */
  readonly x: number[];
  readonly rx: (number | null)[];
  readonly tx: (number | null)[];
  /** the switch's gap (ms) at a marker's time, null elsewhere */
  readonly gap: (number | null)[];
  /** the budget (ms) at every x, or nulls when no budget is known */
  readonly budget: (number | null)[];
}

/** Align a view's samples and markers on one x axis for uPlot (which wants equal-length arrays):
 * a marker at a time with no sample gets null rates there, a sample gets a null gap. */
export function toPlotData(view: SeriesView, budgetMs: number | null): PlotData {
  const x: number[] = [];
  const rx: (number | null)[] = [];
  const tx: (number | null)[] = [];
  const gap: (number | null)[] = [];
  let i = 0;
  let j = 0;
  while (i < view.t.length || j < view.marks.length) {
    const ts = i < view.t.length ? view.t[i]! : Infinity;
    const mark = view.marks[j];
    const tm = mark ? mark.t : Infinity;
    if (ts <= tm) {
      x.push(ts / 1000);
      rx.push(view.rx[i]!);
      tx.push(view.tx[i]!);
      gap.push(ts === tm && mark ? mark.breakMs : null);
      i++;
      if (ts === tm) j++;
    } else {
      x.push(tm / 1000);
      rx.push(null);
      tx.push(null);
      gap.push(mark!.breakMs);
      j++;
    }
  }
  return { x, rx, tx, gap, budget: x.map(() => budgetMs) };
}
