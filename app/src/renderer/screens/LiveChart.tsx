// One VM's live chart (uPlot): frames/s received and sent over time, a marker at each switch
// labelled with its measured gap, and the campaign's gap budget as a dashed line on a second
// axis (ms). Reads the chart buffer at most twice a second, only when it changed.
import { useEffect, useRef, useState } from 'react';
import uPlot from 'uplot';
import { chartBuffer, toPlotData, type ChartMark } from '../chartBuffer.js';
import { fmtLimitMs, fmtMs, fmtPps } from '../format.js';

const height = 190;
const colors = { rx: '#4fc3f7', tx: '#9ccc65', budget: '#ef5350', mark: '#ffb74d', markBad: '#ef5350', axis: '#9aa4ae', grid: '#2a3139' };

/** Draw each switch as a dashed vertical line with its gap written at the top. */
function drawMarks(u: uPlot, marks: readonly ChartMark[]): void {
  const { ctx, bbox } = u;
  const px = uPlot.pxRatio;
  ctx.save();
  ctx.font = `${11 * px}px system-ui, sans-serif`;
  ctx.textBaseline = 'top';
  ctx.lineWidth = 1 * px;
  ctx.setLineDash([4 * px, 3 * px]);
  let lastLabelRight = -Infinity;
  for (const m of marks) {
    const x = Math.round(u.valToPos(m.t / 1000, 'x', true));
    if (x < bbox.left || x > bbox.left + bbox.width) continue;
    const color = m.withinBudget === false ? colors.markBad : colors.mark;
    ctx.strokeStyle = color;
    ctx.beginPath();
    ctx.moveTo(x, bbox.top);
    ctx.lineTo(x, bbox.top + bbox.height);
    ctx.stroke();
    const label = fmtMs(m.breakMs);
    const w = ctx.measureText(label).width;
    // right of the line, or left of it near the plot's right edge
    const lx = x + 3 * px + w > bbox.left + bbox.width ? x - 3 * px - w : x + 3 * px;
    // labels that would overlap the previous one go one line lower
    const y = bbox.top + 2 * px + (lx < lastLabelRight ? 13 * px : 0);
    ctx.fillStyle = color;
    ctx.fillText(label, lx, y);
    lastLabelRight = lx + w;
  }
  ctx.restore();
}

export function LiveChart({ host, vm, budget }: { host: string; vm: string; budget: { ms: number; campaign: string } | null }) {
  const budgetMs = budget?.ms ?? null;
  const el = useRef<HTMLDivElement>(null);
  const budgetRef = useRef(budgetMs);
  budgetRef.current = budgetMs;
  const [counts, setCounts] = useState({ samples: 0, marks: 0 });

  useEffect(() => {
    const target = el.current;
    if (!target) return;
    let marks: ChartMark[] = [];
    let msTop = 1;
    const opts: uPlot.Options = {
      width: Math.max(300, target.clientWidth),
      height,
      scales: {
        x: { time: true },
        pps: { range: (_u, _min, max) => [0, Math.max(10, (max ?? 0) * 1.15)] },
        ms: { range: () => [0, msTop] },
      },
      axes: [
        { stroke: colors.axis, grid: { stroke: colors.grid, width: 1 }, ticks: { stroke: colors.grid } },
        { scale: 'pps', stroke: colors.axis, size: 64, label: 'frames/s', labelSize: 14, grid: { stroke: colors.grid, width: 1 }, ticks: { stroke: colors.grid } },
        { scale: 'ms', side: 1, stroke: colors.budget, size: 48, label: 'gap ms', labelSize: 14, grid: { show: false }, ticks: { stroke: colors.grid } },
      ],
      series: [
        {},
        { label: 'received', scale: 'pps', stroke: colors.rx, width: 1.5, spanGaps: true, points: { show: false }, value: (_u, v) => fmtPps(v) },
        { label: 'sent', scale: 'pps', stroke: colors.tx, width: 1.5, spanGaps: true, points: { show: false }, value: (_u, v) => fmtPps(v) },
        { label: 'switch gap', scale: 'ms', stroke: colors.mark, paths: () => null, points: { show: true, size: 7, fill: colors.mark }, value: (_u, v) => fmtMs(v) },
        { label: 'budget', scale: 'ms', stroke: colors.budget, width: 1, dash: [6, 4], spanGaps: true, points: { show: false }, value: (_u, v) => fmtMs(v) },
      ],
      hooks: { draw: [(u) => drawMarks(u, marks)] },
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
    };
    const plot = new uPlot(opts, [[], [], [], [], []], target);

    let seen = -1;
    let seenBudget: number | null | undefined;
    const tick = () => {
      const v = chartBuffer.version(host);
      if (v === seen && seenBudget === budgetRef.current) return;
      seen = v;
      seenBudget = budgetRef.current;
      const view = chartBuffer.view(host, vm);
      const d = toPlotData(view, budgetRef.current);
      marks = view.marks;
      msTop = Math.max(1, (budgetRef.current ?? 0) * 1.3, ...view.marks.map((m) => m.breakMs * 1.3));
      plot.setData([d.x, d.rx, d.tx, d.gap, d.budget]);
      setCounts((c) => (c.samples === view.t.length && c.marks === view.marks.length ? c : { samples: view.t.length, marks: view.marks.length }));
    };
    tick();
    const timer = setInterval(tick, 500);
    const ro = new ResizeObserver(() => {
      const w = Math.max(300, target.clientWidth);
      if (w !== plot.width) plot.setSize({ width: w, height });
    });
    ro.observe(target);
    return () => {
      clearInterval(timer);
      ro.disconnect();
      plot.destroy();
    };
  }, [host, vm]);

  return (
    <div className="chart-box">
      <div className="chart-title">
        <span className="mono">{vm}</span>
        <span className="muted">
          {' '}
          {counts.samples} samples, {counts.marks} {counts.marks === 1 ? 'switch' : 'switches'}
          {budget ? `, budget ${fmtLimitMs(budget.ms)} (campaign ${budget.campaign})` : ', no campaign budget known'}
        </span>
      </div>
      <div className="chart" ref={el} data-testid={`chart-${vm}`} data-samples={counts.samples} data-marks={counts.marks} />
    </div>
  );
}
