// Integration tests of hitless-probe's measurement: what the break-time reports rely on.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { dp } from '../../../protocol/native/dp.js';
import { latesOf, measured } from '../../../protocol/native/probe.js';
import { nativeBin } from '../../../testing/procs.js';
import { macBytes, sendFrames, labVms, Testbed, vmMac } from '../../../testing/testbed.js';

/** A probe frame as another probe process would send it (layout: native/src/probe/probe.h). */
function probeFrame(dst: string, src: string, runId: number, flowId: number, seq: number): Buffer {
  const f = Buffer.alloc(64);
  macBytes(dst).copy(f, 0);
  macBytes(src).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  // IPv4: 198.18.0.1 -> 198.18.0.2, UDP
  Buffer.from([0x45, 0, 0, 50, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]).copy(f, 14);
  let sum = 0;
  for (let i = 14; i < 34; i += 2) sum += f.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  f.writeUInt16BE(~sum & 0xffff, 24);
  f.writeUInt16BE(runId, 34); // UDP source port = the sender's run id
  f.writeUInt16BE(18516, 36);
  f.writeUInt16BE(30, 38);
  f.write('HLPB', 42, 'latin1');
  f.writeUInt16BE(flowId, 46);
  f.writeBigUInt64LE(BigInt(seq), 48);
  f.writeBigUInt64LE(0n, 56);
  return f;
}

describe('hitless-probe measurement', () => {
  const bed = new Testbed('probe');
  after(() => bed.cleanup());

  test('counts duplicates, reordering and loss exactly, per sender, from frames of another probe', async () => {
    const [up, peer] = bed.veth();
    const gen = await bed.dp('P', { uplink: up });
    await gen.addVm('v1', vmMac(1));
    const probe = await bed.probe({
      name: 'acct',
      vms: [{ name: 'v1', mac: vmMac(1), socket: gen.vhostSocket('v1') }],
      flows: [],
      durationS: 2,
    });
    const sender = '02:bb:00:00:00:01';
    // seq 5 never sent; 2 sent twice; 3 arrives after 4
    const seqs = [0, 1, 2, 2, 4, 3, 6];
    sendFrames(peer, seqs.map((s) => probeFrame(vmMac(1), sender, 4242, 7, s)));
    const sum = await probe.summary;
    const f = measured(sum).find((x) => x.remote === true);
    assert.ok(f, `a flow from the remote sender: ${JSON.stringify(sum.flows)}`);
    assert.equal(f.dst, 'v1');
    assert.equal(f.received, 7);
    assert.equal(f.dup, 1);
    assert.equal(f.reordered, 1);
    // the reordered frame as an event: which, from whom, how far behind
    const late = latesOf(probe.events);
    assert.deepEqual(late.map((l) => [l.seq, l.behind, l.rx_vm, l.src]), [[3, 1, 'v1', sender.toUpperCase()]], JSON.stringify(late));
    assert.equal(f.offered, 7, 'offered inferred from the highest sequence number');
    assert.equal(f.lost, 1);
    assert.equal((await gen.ctl.request(dp.statsShow, { vm: 'v1' })).vms.v1!.tx_pkts, sum.vms.v1!.rx);
  });

  test('reports the link going down when its backend dies, and the break as lost frames and an open gap', async () => {
    const gen = await bed.dp('K9');
    const probe = await bed.probe({
      name: 'kill',
      vms: await gen.serve(labVms(2)),
      flows: [{ src: 'v1', dst: 'v2', pps: 5000 }],
      durationS: 3,
    });
    await new Promise((r) => setTimeout(r, 1000));
    gen.child.kill('SIGKILL');
    const sum = await probe.summary;
    const downs = probe.events.filter((e) => e.event === 'link' && !e.data.up);
    assert.deepEqual(downs.map((e) => (e.event === 'link' ? e.data.vm : '')).sort(), ['v1', 'v2']);
    assert.equal(sum.vms.v1!.link_down, 1);
    const f = measured(sum)[0]!;
    assert.ok(f.lost > 5000 * 1.5, `frames sent after the kill are lost (${f.lost})`);
    // both RFC 6201 methods agree on a break that lasted until the end of the run
    assert.ok(f.break_ms_timestamp > 1500, `timestamp method ${f.break_ms_timestamp} ms`);
    assert.ok(Math.abs(f.break_ms_loss - f.break_ms_timestamp) < 100, `${f.break_ms_loss} vs ${f.break_ms_timestamp}`);
    assert.ok(f.gaps.some((g) => g.open === true), 'the unfinished gap is reported as open');
  });

  test('refuses bad arguments with exit code 2 and a message that names the argument', () => {
    const cases: [string[], RegExp][] = [
      [['--vm', 'a,02:00:00:00:00:01'], /--vm/],
      [['--vm', 'a,zz:00:00:00:00:01,/tmp/x.sock'], /MAC|mac/],
      [['--vm', 'a,02:00:00:00:00:01,/tmp/x.sock', '--flow', 'a:nope:100'], /nope/],
      [['--vm', 'a,02:00:00:00:00:01,/tmp/x.sock', '--flow', 'a:a:fast'], /--flow/],
      [['--vm', 'a,02:00:00:00:00:01,/tmp/x.sock', '--frame-size', '63'], /--frame-size/],
      [['--vm', 'a,02:00:00:00:00:01,/tmp/x.sock', '--bogus'], /bogus/],
    ];
    for (const [args, msg] of cases) {
      try {
        execFileSync(nativeBin('hitless-probe'), ['-l', '0', '--no-huge', '-m', '64', '--no-pci', '--', ...args], { stdio: 'pipe' });
        assert.fail(`accepted: ${args.join(' ')}`);
      } catch (e) {
        const err = e as { status: number; stderr: Buffer };
        assert.equal(err.status, 2, `${args.join(' ')}: exit ${err.status}`);
        assert.match(err.stderr.toString(), msg);
      }
    }
  });
});
