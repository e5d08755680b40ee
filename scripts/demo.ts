// make demo: one host upgraded under live traffic. Generation A serves four probe VMs
// through the keeper; generation B (the new release) starts beside it and is pre-loaded; each
// VM's live vhost-user session is handed to B one at a time, with its break measured
// (the keeper's control-plane window, the receive gap the VM's flows saw, lost frames, link
// events at the frontend); one VM is rolled back to A and forward again; A is retired.
// Prints a break-time report and writes it as JSON under results/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { attribute, type EventWindow } from '../protocol/measure.js';
import { dp } from '../protocol/native/dp.js';
import { keeper } from '../protocol/native/keeper.js';
import { measured, gapsOf } from '../protocol/native/probe.js';
import { Testbed } from '../testing/testbed.js';

const PPS = 5000;
const GAP_US = 500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function table(rows: (string | number)[][]): string {
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  return rows.map((r) => r.map((v, c) => String(v).padStart(w[c]!)).join('  ')).join('\n');
}

async function main(): Promise<void> {
  const bed = new Testbed('demo');
  try {
    const h = await bed.upgradeHost({ vms: 4, pps: PPS, durationS: 3600, gapUs: GAP_US });
    const info = await h.a.ctl.request(dp.genInfo, {});
    console.log(`host up: generation A (hitless-dp ${info.version}) serves ${h.vms.join(', ')} through the keeper; ` +
      `${h.vms.length} flows x ${PPS} pps between them; generation B started beside it`);
    await sleep(1000);
    for (const vm of h.vms) await h.k.ctl.request(keeper.sessionPreload, { vm, gen: 'B' });
    console.log('pre-loaded every session on B (memory mapped, rings set up, not started)\n');

    const moves: { vm: string; from: string; to: string; window_us: number; w: EventWindow }[] = [];
    const move = async (vm: string, gen: string) => {
      const r = await h.k.ctl.request(keeper.handoffStart, { vm, gen });
      const w = { vm, start_ns: r.timing.quiesce_ns, end_ns: r.timing.resumed_ns };
      moves.push({ vm, from: r.from, to: r.to, window_us: r.timing.window_ns / 1000, w });
      console.log(`  ${vm}: ${r.from} -> ${r.to}  control-plane window ${(r.timing.window_ns / 1000).toFixed(0)} us  rings at ${r.rings.map((x) => x.base).join('/')}`);
      await sleep(300);
    };
    console.log('upgrade, one VM at a time (each would wait for an operator approval in the console):');
    for (const vm of h.vms) await move(vm, 'B');
    console.log(`rollback of ${h.vms[1]} (a handoff back to A, which stays up until commit), then forward again:`);
    await move(h.vms[1]!, 'A');
    await move(h.vms[1]!, 'B');
    await sleep(700);
    const sum = await h.probe.stop();
    const a = attribute(gapsOf(h.probe.events), moves.map((m) => m.w), GAP_US);
    const links = h.probe.events.filter((e) => e.event === 'link').length;
    await h.a.stop();
    console.log('commit: generation A stopped; every VM runs on B\n');

    const rows: (string | number)[][] = [['vm', 'move', 'window us', 'gap ms', 'lost']];
    moves.forEach((m, i) => {
      const lost = measured(sum).filter((f) => f.dst === m.vm).reduce((n, f) => n + f.lost, 0);
      rows.push([m.vm, `${m.from}->${m.to}`, m.window_us.toFixed(0), a.event_gap_ms[i]!.toFixed(2), i === moves.findIndex((x) => x.vm === m.vm) ? lost : '']);
    });
    const bg = [...a.background_gap_ms].sort((x, y) => x - y);
    console.log(`break-time report (RFC 6201: receive gap on the VM's flows around each move, frames lost; ` +
      `a gap under ${GAP_US / 1000} ms counts as ${GAP_US / 1000}):\n${table(rows)}`);
    console.log(`\nframes offered ${sum.totals.offered}, lost ${sum.totals.lost}, duplicated ${sum.totals.dup}, ` +
      `link events seen by the VMs ${links}`);
    console.log(`background gaps of the same run (no move near them, this 2-core machine's scheduler): ${bg.length}, ` +
      `max ${(bg.at(-1) ?? 0).toFixed(2)} ms`);
    mkdirSync('results', { recursive: true });
    const path = `results/demo-${Date.now()}.json`;
    writeFileSync(path, JSON.stringify({ generation_a: info, moves, attribution: a, probe: sum }, null, 2));
    console.log(`\nreport written to ${path}`);
  } finally {
    await bed.cleanup();
  }
}

main().catch((e: unknown) => {
  console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
