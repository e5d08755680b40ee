// make demo: one datapath generation serving four probe VMs with traffic between them; a fault
// is injected into one VM and the probe measures the break it caused, RFC 6201 style, beside
// the background gaps of the same run. Prints live counters and a break-time report, and writes
// the report as JSON under results/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dp } from '../agent/src/native/dpProtocol.js';
import { measured, type ProbeSummary } from '../agent/src/native/probeProtocol.js';
import { labVms, Testbed } from '../agent/src/native/testbed.js';

const VMS = ['vm1', 'vm2', 'vm3', 'vm4'];
const PPS = 10000;
const SECONDS = 8;
const STALL = { vm: 'vm3', ms: 30, atS: 3 };

function table(rows: (string | number)[][]): string {
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  return rows.map((r) => r.map((v, c) => String(v).padStart(w[c]!)).join('  ')).join('\n');
}

async function main(): Promise<void> {
  const bed = new Testbed('demo');
  try {
    console.log(`hitless demo: generation A, ${VMS.length} probe VMs, ${VMS.length} flows x ${PPS} pps, ${SECONDS} s`);
    const gen = await bed.dp('A');
    const vms = await gen.serve(labVms(4, 'vm'));
    const info = await gen.ctl.request(dp.genInfo, {});
    console.log(`generation ${info.gen_id}: hitless-dp ${info.version}, forwarding stage ${info.fwd.name} ${info.fwd.version}, pid ${info.pid}`);
    const probe = await bed.probe({
      name: 'demo',
      vms,
      flows: VMS.map((vm, i) => ({ src: vm, dst: VMS[(i + 1) % VMS.length]!, pps: PPS })),
      durationS: SECONDS,
      gapUs: 2000,
    });
    for (let t = 1; t < SECONDS; t++) {
      await new Promise((r) => setTimeout(r, 1000));
      if (t === STALL.atS) {
        await gen.ctl.request(dp.debugStall, { vm: STALL.vm, ms: STALL.ms });
        console.log(`t=${t}s  injected: debug/stall ${STALL.vm} for ${STALL.ms} ms`);
      }
      const st = await gen.ctl.request(dp.statsShow, {});
      const line = VMS.map((vm) => `${vm} rx ${st.vms[vm]!.rx_pkts} tx ${st.vms[vm]!.tx_pkts}`).join(' | ');
      console.log(`t=${t}s  ${line}`);
    }
    const sum: ProbeSummary = await probe.summary;
    const rows: (string | number)[][] = [['flow', 'offered', 'lost', 'dup', 'gaps>2ms', 'max gap ms', 'break ms (loss)', 'break ms (timestamp)']];
    for (const f of measured(sum))
      rows.push([`${f.src}->${f.dst}`, f.offered, f.lost, f.dup, f.gap_count, (f.max_gap_us / 1000).toFixed(2), f.break_ms_loss.toFixed(2), f.break_ms_timestamp.toFixed(2)]);
    console.log(`\nbreak-time report (RFC 6201; the fault on ${STALL.vm} was ${STALL.ms} ms):\n${table(rows)}`);
    mkdirSync('results', { recursive: true });
    const path = `results/demo-${Date.now()}.json`;
    writeFileSync(path, JSON.stringify({ generation: info, stall: STALL, probe: sum }, null, 2));
    console.log(`\nreport written to ${path}`);
  } finally {
    await bed.cleanup();
  }
}

main().catch((e: unknown) => {
  console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
