// bench/run reconnect [--quick] [--vms N] [--pps TOTAL] [--runs R]
//
// The stock DPDK path, on the same machine and traffic, for comparison with handoff and
// failover: the frontends (virtio_user, server=1) own their sockets, generation A is the vhost
// client; A is killed and generation B — already running, "warm" — connects to the same
// sockets. No keeper. The frontend sees the link go down and come back, and renegotiates.
import { dp } from '../protocol/native/dp.js';
import { measured, probe, gapsOf } from '../protocol/native/probe.js';
import type { ProbeProcess } from '../testing/procs.js';
import { Testbed, labVms } from '../testing/testbed.js';
import { attribute, type EventWindow } from '../protocol/measure.js';
import { BreakTally, finish, numOpt, quick, run, sleep } from './lib.js';
import { join } from 'node:path';

const nVms = numOpt('reconnect', '--vms', quick ? 2 : 4);
const totalPps = numOpt('reconnect', '--pps', 50000);
const runs = numOpt('reconnect', '--runs', quick ? 3 : 8);
const GAP_US = 500;

const nowNs = (): number => Number(process.hrtime.bigint());

/** Frames lost so far, as the frontends count them. */
async function lostNow(probes: ProbeProcess[]): Promise<number> {
  let n = 0;
  for (const p of probes) for (const f of measured(await p.ctl!.request(probe.statsShow, {}))) n += f.lost;
  return n;
}

async function main(): Promise<void> {
  const tally = new BreakTally();
  let reconnects = 0;
  for (let r = 0; r < runs; r++) {
    const bed = new Testbed('bench-reconnect');
    try {
      const perVm = Math.max(1, Math.floor(totalPps / nVms));
      const vms = labVms(nVms).map((v) => ({ ...v, socket: join(bed.dir, `${v.name}.sock`), server: true }));
      const a = await bed.dp('A');
      const b = await bed.dp('B');
      for (const v of vms) await a.ctl.request(dp.vmAdd, { vm: v.name, mac: v.mac, socket: v.socket, client: true });
      // one frontend process per VM: DPDK 22.11's virtio_user panics in its interrupt thread
      // when two server-mode ports of one process lose their backend at once ("Error adding
      // fd ... epoll_ctl"), which would end the measurement rather than the reconnect
      const probes = [];
      for (const [i, v] of vms.entries())
        probes.push(
          await bed.probe({
            name: `reconnect-${v.name}`,
            vms: [v],
            flows: [{ src: v.name, dst: vms[(i + 1) % vms.length]!.mac, pps: perVm }],
            durationS: 3600,
            gapUs: GAP_US,
            ctlPath: join(bed.dir, `probe-${v.name}.sock`),
          }),
        );
      // loss is counted from here: frames sent before every frontend was up do not count
      await sleep(500);
      const lostBefore = await lostNow(probes);
      await sleep(1000);
      const killNs = nowNs();
      a.child.kill('SIGKILL');
      for (const v of vms) await b.ctl.request(dp.vmAdd, { vm: v.name, mac: v.mac, socket: v.socket, client: true });
      // wait until every VM is back up on B
      for (let i = 0; i < 200; i++) {
        const l = await b.ctl.request(dp.vmList, {});
        if (l.vms.every((x) => x.connected)) break;
        await sleep(20);
      }
      await sleep(1000);
      const up = (await b.ctl.request(dp.vmList, {})).vms;
      const lostAfter = await lostNow(probes);
      const sums = await Promise.all(probes.map((p) => p.stop()));
      const windows: EventWindow[] = up.map((v) => ({ vm: v.vm, start_ns: killNs, end_ns: v.connected_ns }));
      reconnects += up.filter((v) => v.connected).length;
      const at = attribute(gapsOf(probes.flatMap((p) => p.events)), windows, GAP_US);
      // each probe measures what it receives (from another process: loss from sequence numbers)
      tally.add(at, {
        lost: lostAfter - lostBefore,
        dup: sums.flatMap((s) => measured(s)).reduce((n, f) => n + f.dup, 0),
        offered: sums.reduce((n, s) => n + s.totals.offered, 0),
        links: probes.flatMap((p) => p.events).filter((e) => e.event === 'link').length,
      });
      console.error(`run ${r + 1}/${runs}: worst gap ${Math.max(...at.event_gap_ms).toFixed(1)} ms`);
    } finally {
      await bed.cleanup();
    }
  }
  const result = { vms: nVms, pps_total: Math.floor(totalPps / nVms) * nVms, runs, reconnects, ...tally.json() };
  finish('reconnect', [
    `Stock DPDK reconnect (virtio_user server=1, generation as vhost client, warm standby connects after kill -9), ${runs} runs x ${nVms} VMs, ${result.pps_total} pps.`,
    '',
    `- ${reconnects} sessions re-established; lost ${tally.lost} of ${tally.offered} offered, duplicated ${tally.dup}, link events at the frontends ${tally.links}`,
    ...tally.lines('reconnect (kill -> traffic again)'),
  ], result);
}

run('reconnect', main);
