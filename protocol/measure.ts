// One definition of each figure (DESIGN.md §10). Every figure an operator sees — on a console
// screen, in an export, printed by the CLI or by a benchmark — is computed here, from the same
// per-VM rows (one Measurement per VM per switch) that the reports list:
//   lost    frames the VM's frontend offered (ring refusals included) that never arrived, by
//           sequence accounting: a frame that arrives late is delayed, not lost. Where no
//           traffic witness exists, the datapath's drop counters (lost_basis says which).
//   break   the receive gap attributed to the switch (RFC 6201 timestamp method) per direction,
//           shown beside the frame-loss method (lost / offered rate), the keeper's window and
//           the datapath gap; the background gaps of the same run sit beside it.
//   within budget: judged once, by the agent (judge below); everyone else displays the verdict.
// Pure: no node, electron or DOM imports (the renderer, the agent, the CLI and the benchmarks
// all import it).
import { z } from 'zod';

const int = z.number().int();

// ------------------------------------------------------------------------------ samples

export interface Percentiles {
  n: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
}

/** Nearest-rank percentiles of a sample (no interpolation: every figure is a value that was
 * measured). An empty sample has no percentiles: null, never 0 or NaN. */
export function percentiles(xs: readonly number[]): Percentiles {
  if (xs.length === 0) return { n: 0, p50: null, p99: null, max: null };
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
  return { n: s.length, p50: at(50), p99: at(99), max: s[s.length - 1]! };
}

/** The one rounding rule for figures shown or exported: `digits` decimals (3 by default, so
 * a sub-microsecond window in ms or a µs figure keeps what it measured). */
export function round(x: number, digits?: number): number;
export function round(x: number | null, digits?: number): number | null;
export function round(x: number | null, digits = 3): number | null {
  if (x === null) return null;
  const k = 10 ** digits;
  return Math.round(x * k) / k;
}

/** Percentiles rounded for display and JSON. */
export function roundedPercentiles(xs: readonly number[], digits = 3): Percentiles {
  const p = percentiles(xs);
  return { n: p.n, p50: round(p.p50, digits), p99: round(p.p99, digits), max: round(p.max, digits) };
}

export interface Bin {
  lo: number;
  hi: number;
  count: number;
}

/** Histogram bins over [0, max(values, budget)] in "nice" widths (0.1, 0.2, 0.5, 1, 2, 5 ...),
 * at most maxBins of them; the last bin includes its upper edge. The screen and every export
 * draw these same bins. */
export function histogram(values: readonly number[], budget: number | null, maxBins = 20): Bin[] {
  if (values.length === 0) return [];
  const top = Math.max(...values, budget ?? 0, 1e-3);
  const raw = top / maxBins;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const width = [1, 2, 5, 10].map((k) => k * mag).find((w) => w >= raw) ?? 10 * mag;
  const n = Math.max(1, Math.ceil(top / width - 1e-9));
  const bins: Bin[] = Array.from({ length: n }, (_, i) => ({ lo: i * width, hi: (i + 1) * width, count: 0 }));
  for (const v of values) bins[Math.min(n - 1, Math.max(0, Math.floor(v / width)))]!.count++;
  return bins;
}

// ------------------------------------------------------------------------------ a VM's switch

export const Budget = z.object({ max_gap_ms: z.number().positive(), max_lost: int.min(0) }).strict();
export type Budget = z.infer<typeof Budget>;

/** A traffic witness's view of one direction of a VM's traffic around its switch. */
export const Direction = z.object({
  /** flows of the VM in this direction the witness sees */
  flows: int,
  /** frames of those flows that never arrived (a later frame did, within the settle time) */
  lost: int,
  /** frames that arrived after a later frame of their flow: reordered, not lost */
  delayed: int,
  /** the largest receive gap on those flows touching the switch window; null: none over the threshold */
  gap_ms: z.number().nullable(),
  /** what those flows offered per second (for the frame-loss method) */
  offered_pps: z.number(),
});
export type Direction = z.infer<typeof Direction>;

/** A receive gap on one flow, as the witness saw it (ns of the witness's monotonic clock). */
export const SeenGap = z.object({ flow: z.string(), start_ns: int, ms: z.number() });
export type SeenGap = z.infer<typeof SeenGap>;

export const Witness = z.object({
  /** what measured it: the lab's probe VMs, a QEMU guest ... */
  source: z.string(),
  /** gaps shorter than this are not seen */
  threshold_ms: z.number(),
  /** towards the VM */
  rx: Direction.nullable(),
  /** from the VM (to receivers the witness sees; ring refusals for the others) */
  tx: Direction.nullable(),
  /** gaps on the VM's flows in the seconds before the switch that touched no switch window */
  background: z.object({ seconds: z.number(), gaps: z.array(SeenGap) }),
});
export type Witness = z.infer<typeof Witness>;

const MeasurementV2 = z.object({
  vm: z.string(),
  mode: z.enum(['handoff', 'swap']).default('handoff'),
  from: z.string(),
  to: z.string(),
  t_ns: int,
  /** handoff: the keeper's quiesce -> resume; swap: the packet loop standing still */
  window_us: z.number(),
  /** handoff: the window's parts — the old generation stopping the rings (its drain included),
   * the new one starting them (null: a swap, or an agent that did not say) */
  phases_us: z.object({ stop: z.number(), start: z.number() }).nullable().default(null),
  /** datapath: last packet the old generation moved for the VM -> first the new one moved */
  passive_gap_us: z.number().nullable(),
  rings: z.array(z.object({ ring: int, base: int })),
  anomalies: z.array(z.string()),
  /** frames the datapath dropped for this VM during its switch, both generations (exact) */
  dropped: int,
  witness: Witness.nullable(),
  /** §10 lost: the witness's count where there is one, else the datapath's drops */
  lost: int,
  lost_basis: z.enum(['witness', 'datapath']),
  /** §10 break (ms): the witness's gap when it saw one over its threshold, else the keeper's
   * window or the datapath gap, whichever is larger */
  break_ms: z.number(),
  break_basis: z.enum(['witness', 'window', 'datapath']),
  /** RFC 6201 frame-loss method: lost / offered rate (ms); null without a witness */
  break_loss_ms: z.number().nullable(),
  /** the agent's verdict against the host's budget; null: no budget was given */
  within_budget: z.boolean().nullable(),
});

/** The parts of a measurement the agent measures; the figures follow from them (figures()). */
export type MeasuredParts = Omit<z.infer<typeof MeasurementV2>, 'lost' | 'lost_basis' | 'break_ms' | 'break_basis' | 'break_loss_ms' | 'within_budget'>;

/** A measurement from an agent of the previous format (journals outlive agent upgrades): its
 * probe view was one direction, towards the VM; the figures are derived the same way. */
function upgradeLegacy(raw: unknown): unknown {
  if (typeof raw !== 'object' || raw === null || 'lost' in raw) return raw;
  const o = raw as Record<string, unknown> & { probe?: { lost: number; gap_ms: number | null } | null };
  const { probe, within_budget, ...rest } = o;
  const witness: Witness | null = probe
    ? { source: 'lab probe', threshold_ms: 0, rx: { flows: 1, lost: probe.lost, delayed: 0, gap_ms: probe.gap_ms, offered_pps: 0 }, tx: null, background: { seconds: 0, gaps: [] } }
    : null;
  const parts = MeasurementV2.pick({ window_us: true, passive_gap_us: true, dropped: true }).safeParse(rest);
  if (!parts.success) return raw;
  return { ...rest, witness, ...figures({ ...(rest as unknown as MeasuredParts), ...parts.data, witness }, null), within_budget: within_budget ?? null };
}

export const Measurement = z.preprocess(upgradeLegacy, MeasurementV2);
export type Measurement = z.infer<typeof MeasurementV2>;

const directions = (w: Witness | null): Direction[] => (w ? [w.rx, w.tx].filter((d): d is Direction => d !== null) : []);

/** The figures of a switch from what was measured: lost, break (both methods) and, given a
 * budget, the verdict. The agent calls this once per VM per switch; nobody else judges. */
export function figures(p: MeasuredParts, budget: Budget | null): Pick<Measurement, 'lost' | 'lost_basis' | 'break_ms' | 'break_basis' | 'break_loss_ms' | 'within_budget'> {
  const dirs = directions(p.witness);
  const lost = p.witness ? dirs.reduce((n, d) => n + d.lost, 0) : p.dropped;
  const seen = dirs.flatMap((d) => (d.gap_ms === null ? [] : [d.gap_ms]));
  const windowMs = p.window_us / 1000;
  const passiveMs = (p.passive_gap_us ?? 0) / 1000;
  const [breakMs, basis] =
    seen.length > 0 ? [Math.max(...seen), 'witness' as const] : passiveMs > windowMs ? [passiveMs, 'datapath' as const] : [windowMs, 'window' as const];
  const lossMs = dirs.filter((d) => d.offered_pps > 0).map((d) => (d.lost * 1000) / d.offered_pps);
  const out = {
    lost,
    lost_basis: p.witness ? ('witness' as const) : ('datapath' as const),
    break_ms: breakMs,
    break_basis: basis,
    break_loss_ms: p.witness ? (lossMs.length ? Math.max(...lossMs) : 0) : null,
  };
  return { ...out, within_budget: budget ? judge(out, budget) === null : null };
}

/** Why a switch is over the budget, in words (null: within it). The agent's verdict is
 * judge(...) === null; displays use the words to explain a verdict the agent gave. */
export function judge(m: Pick<Measurement, 'break_ms' | 'lost'>, b: Budget): string | null {
  if (m.break_ms > b.max_gap_ms) return `break ${round(m.break_ms, 2)} ms is over the ${b.max_gap_ms} ms budget`;
  if (m.lost > b.max_lost) return `${m.lost} frame${m.lost === 1 ? '' : 's'} lost, over the budget of ${b.max_lost}`;
  return null;
}

// ------------------------------------------------------------------------------ attribution

/** A receive gap as a witness reports it. */
export interface GapEvent {
  src?: string | undefined;
  rx_vm?: string | undefined;
  flow: string;
  start_ns: number;
  end_ns: number;
  gap_us: number;
  /** frames missing across it (absent: not counted by the witness) */
  lost_in_gap?: number | undefined;
}

/** A switch (or a control: an idle window) in the witness's clock. */
export interface EventWindow {
  vm: string;
  start_ns: number;
  end_ns: number;
}

export interface Attribution {
  /** per window: the largest gap (ms) on its VM's flows, or the threshold when none was over it */
  event_gap_ms: number[];
  /** windows with no gap over the threshold (their entry above is an upper bound) */
  below_threshold: number;
  /** gaps (ms) that touch no window */
  background_gap_ms: number[];
  /** frames missing across the gaps that touch a window, and across the others */
  event_missing: number;
  background_missing: number;
}

/** Gaps closer than this to a window are charged to it (the witness and the keeper do not
 * stamp the same instant; a frame queued during the window lands just after it). */
export const ATTRIBUTION_MARGIN_NS = 2e6;

export const touches = (g: Pick<GapEvent, 'start_ns' | 'end_ns'>, w: Pick<EventWindow, 'start_ns' | 'end_ns'>, marginNs = ATTRIBUTION_MARGIN_NS): boolean =>
  g.start_ns <= w.end_ns + marginNs && g.end_ns >= w.start_ns - marginNs;

/** Charge each gap to the window it touches on a flow into or out of that window's VM; a gap
 * of another VM during a window is not background either; every other gap is background. */
export function attribute(gaps: readonly GapEvent[], windows: readonly EventWindow[], thresholdUs: number, marginNs = ATTRIBUTION_MARGIN_NS): Attribution {
  const used = new Set<number>();
  const eventGap: number[] = [];
  let below = 0;
  for (const w of windows) {
    let worst = -1;
    gaps.forEach((g, i) => {
      if (!touches(g, w, marginNs)) return;
      used.add(i);
      if (g.src === w.vm || g.rx_vm === w.vm) worst = Math.max(worst, g.gap_us / 1000);
    });
    if (worst < 0) {
      below++;
      worst = thresholdUs / 1000;
    }
    eventGap.push(worst);
  }
  const missing = (pick: (i: number) => boolean) => gaps.reduce((n, g, i) => n + (pick(i) ? (g.lost_in_gap ?? 0) : 0), 0);
  return {
    event_gap_ms: eventGap,
    below_threshold: below,
    background_gap_ms: gaps.filter((_, i) => !used.has(i)).map((g) => g.gap_us / 1000),
    event_missing: missing((i) => used.has(i)),
    background_missing: missing((i) => !used.has(i)),
  };
}

// ------------------------------------------------------------------------------ a host's upgrade

/** What a host's VMs lost over its whole upgrade — from prepare to the end of its commit or
 * rollback, in switch windows or not — as its traffic witness counted it. Its switches' rows
 * count only what was lost in their windows; the rest is lost all the same (a datapath loop
 * stalled between switches, a prepare that disturbed the active generation) and is in the
 * headline too (lostOutside). */
export const UpgradeLoss = z.object({
  source: z.string(),
  /** VMs the witness saw */
  vms: int,
  lost: int,
  /** prepare -> end (s) */
  seconds: z.number(),
  outcome: z.enum(['committed', 'rolled-back', 'aborted']),
});
export type UpgradeLoss = z.infer<typeof UpgradeLoss>;

/** Frames a host lost outside the rows shown for it: its upgrade's loss less what those rows
 * count (never negative: a row may count a frame that the whole span, settled later, saw
 * arrive after all). null: nobody counted the span (no witness, or the upgrade is under way). */
export function lostOutside(span: UpgradeLoss | null, rows: readonly Pick<Row, 'lost'>[]): number | null {
  if (!span) return null;
  return Math.max(0, span.lost - rows.reduce((n, r) => n + (r.lost ?? 0), 0));
}

// ------------------------------------------------------------------------------ a campaign's rows

export interface Row {
  lost: number | null;
  break_ms: number | null;
  within_budget: boolean | null;
  witness?: Witness | null;
}

export interface Headline {
  /** rows with a measurement */
  measured: number;
  /** the rows' lost plus what the hosts lost outside them (lostOutside): never a figure the
   * rows and the hosts' lines do not show */
  lost: number;
  /** of lost, what no row counts: frames lost during the hosts' upgrades outside every switch */
  lost_outside: number;
  /** rows whose lost comes from the datapath's counters (no witness) */
  lost_from_datapath: number;
  break_ms: Percentiles;
  over_budget: number;
  /** the witnesses' background gaps of the same run (each gap once, over every row) */
  background_gap_ms: Percentiles;
}

/** The headline of a set of rows (a campaign, a CLI run, a benchmark): computed from the rows
 * and, per host, what it lost outside them (lostOutside), and nothing else, so it cannot
 * disagree with them. */
export function headline(rows: readonly (Row & { lost_basis?: string | null })[], outside: readonly (number | null)[] = []): Headline {
  const measured = rows.filter((r) => r.break_ms !== null);
  const bg = new Map<string, number>();
  for (const r of rows) for (const g of r.witness?.background.gaps ?? []) bg.set(`${g.flow}@${g.start_ns}`, g.ms);
  const lostOut = outside.reduce<number>((n, x) => n + (x ?? 0), 0);
  return {
    measured: measured.length,
    lost: rows.reduce((n, r) => n + (r.lost ?? 0), 0) + lostOut,
    lost_outside: lostOut,
    lost_from_datapath: rows.filter((r) => r.lost_basis === 'datapath').length,
    break_ms: roundedPercentiles(measured.map((r) => r.break_ms!)),
    over_budget: rows.filter((r) => r.within_budget === false).length,
    background_gap_ms: roundedPercentiles([...bg.values()]),
  };
}
