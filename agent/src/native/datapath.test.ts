// Integration tests of a datapath generation (hitless-dp) with probe VMs (hitless-probe): real
// DPDK processes (--no-huge), real vhost-user sessions, real veth uplinks.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CtlError } from './ctlClient.js';
import { dp } from './dpProtocol.js';
import { nativeBin } from './procs.js';
import { broadcastFrom, sendFrames, Testbed, vmMac } from './testbed.js';

const VMS = ['v1', 'v2', 'v3', 'v4'];

describe('hitless-dp with 4 probe VMs', () => {
  const bed = new Testbed('fwd');
  after(() => bed.cleanup());

  test('forwards VM to VM with 0 lost, and its counters match what the probe counted', async () => {
    const gen = await bed.dp('A');
    for (const [i, vm] of VMS.entries()) await gen.addVm(vm, vmMac(i + 1));
    const probe = await bed.probe({
      name: 'fwd',
      vms: VMS.map((vm, i) => ({ name: vm, mac: vmMac(i + 1), socket: gen.vhostSocket(vm) })),
      // a ring of flows, 40 kpps in all
      flows: VMS.map((vm, i) => ({ src: vm, dst: VMS[(i + 1) % VMS.length]!, pps: 10000 })),
      durationS: 5,
    });
    const sum = await probe.summary;
    assert.equal(sum.totals.lost, 0, `lost frames: ${JSON.stringify(sum.flows.map((f) => [f.src, f.dst, f.lost]))}`);
    assert.equal(sum.totals.dup, 0);
    assert.equal(sum.totals.reordered, 0);
    for (const f of sum.flows) {
      assert.ok(f.offered >= 10000 * 5 * 0.9, `${f.src}->${f.dst} offered only ${f.offered}`);
      assert.equal(f.received, f.offered, `${f.src}->${f.dst}`);
    }
    const st = await gen.ctl.request(dp.statsShow, {});
    for (const vm of VMS) {
      const s = st.vms[vm]!;
      const p = sum.vms[vm]!;
      // rx: frames the datapath took from the guest = frames the guest's ring accepted
      assert.equal(s.rx_pkts, p.tx, `${vm}: dp rx_pkts vs probe tx`);
      // tx: frames the datapath put into the guest = frames the guest received
      assert.equal(s.tx_pkts, p.rx, `${vm}: dp tx_pkts vs probe rx`);
      assert.deepEqual(s.drops, { ring_full: 0, no_dest: 0, not_ready: 0, stalled: 0 });
      assert.ok(s.last_rx_ns > 0 && s.last_tx_ns > 0);
    }
    // frontends never saw the link go down
    assert.equal(probe.events.filter((e) => e.event === 'link' && !e.data.up).length, 0);
  });

  test('debug/stall of 50 ms is measured by the probe as a ~50 ms gap, with its lost frames', async () => {
    const gen = await bed.dp('S');
    for (const [i, vm] of VMS.entries()) await gen.addVm(vm, vmMac(i + 1));
    const probe = await bed.probe({
      name: 'stall',
      vms: VMS.map((vm, i) => ({ name: vm, mac: vmMac(i + 1), socket: gen.vhostSocket(vm) })),
      flows: [
        { src: 'v1', dst: 'v2', pps: 10000 }, // into the stalled VM: dropped while stalled
        { src: 'v2', dst: 'v3', pps: 10000 }, // out of it: held in its TX ring, delayed
        { src: 'v3', dst: 'v4', pps: 10000 }, // unrelated: must not notice
      ],
      durationS: 4,
      gapUs: 10000,
    });
    await new Promise((r) => setTimeout(r, 1500));
    const stall = await gen.ctl.request(dp.debugStall, { vm: 'v2', ms: 50 });
    const sum = await probe.summary;
    const st = await gen.ctl.request(dp.statsShow, { vm: 'v2' });
    const into = sum.flows.find((f) => f.src === 'v1' && f.dst === 'v2')!;
    const outOf = sum.flows.find((f) => f.src === 'v2' && f.dst === 'v3')!;
    const other = sum.flows.find((f) => f.src === 'v3' && f.dst === 'v4')!;

    // into v2: the frames dropped during the stall are exactly the probe's lost frames
    assert.ok(into.lost > 0, 'frames towards a stalled VM are lost');
    assert.equal(into.lost, st.vms.v2!.drops.stalled, 'probe lost == dp drops.stalled');
    // the break, both RFC 6201 ways, is the stall within a generous bound (2 shared cores)
    const gapMs = into.max_gap_us / 1000;
    assert.ok(gapMs >= 40 && gapMs <= 300, `timestamp-method gap ${gapMs} ms`);
    assert.ok(into.break_ms_loss >= 30 && into.break_ms_loss <= 300, `frame-loss break ${into.break_ms_loss} ms`);
    // the gap was seen when the stall happened
    const g = into.gaps.find((x) => x.gap_us === into.max_gap_us)!;
    assert.ok(g.start_ns >= stall.start_ns - 20e6 && g.start_ns <= stall.until_ns, 'gap located at the stall');
    // out of v2: delayed in the guest's TX ring, not lost
    assert.equal(outOf.lost, 0);
    assert.ok(outOf.max_gap_us / 1000 >= 40, `outgoing gap ${outOf.max_gap_us} us`);
    assert.equal(other.lost, 0);
  });
});

describe('hitless-dp control socket', () => {
  const bed = new Testbed('ctl');
  after(() => bed.cleanup());

  test('answers every kind of bad input with an error, changes nothing, and keeps forwarding', async () => {
    const gen = await bed.dp('C');
    for (const [i, vm] of VMS.slice(0, 2).entries()) await gen.addVm(vm, vmMac(i + 1));
    const probe = await bed.probe({
      name: 'ctl',
      vms: VMS.slice(0, 2).map((vm, i) => ({ name: vm, mac: vmMac(i + 1), socket: gen.vhostSocket(vm) })),
      flows: [
        { src: 'v1', dst: 'v2', pps: 10000 },
        { src: 'v2', dst: 'v1', pps: 10000 },
      ],
      durationS: 4,
    });
    const before = await gen.ctl.request(dp.vmList, {});
    const bad: [string, string][] = [
      ['this is not json', 'parse-error'],
      ['{"id":1,"cmd":"vm/add","args":{"vm":"x"', 'parse-error'],
      ['[1,2,3]', 'invalid-request'],
      ['{"id":2}', 'invalid-request'],
      ['{"id":3,"cmd":"no/such"}', 'unknown-command'],
      ['{"id":4,"cmd":"vm/add","args":{"vm":"v9"}}', 'invalid-args'],
      ['{"id":5,"cmd":"vm/add","args":{"vm":"v9","mac":17}}', 'invalid-args'],
      ['{"id":6,"cmd":"vm/add","args":{"vm":"v9","mac":"zz:00:00:00:00:01"}}', 'invalid-args'],
      ['{"id":7,"cmd":"vm/add","args":{"vm":"v9","mac":"01:00:5e:00:00:01"}}', 'invalid-args'],
      ['{"id":8,"cmd":"vm/add","args":{"vm":"../etc","mac":"02:00:00:00:00:09"}}', 'invalid-args'],
      ['{"id":9,"cmd":"vm/add","args":{"vm":"v1","mac":"02:00:00:00:00:09"}}', 'exists'],
      ['{"id":10,"cmd":"vm/add","args":{"vm":"v9","mac":"02:00:00:00:00:01"}}', 'exists'],
      ['{"id":11,"cmd":"vm/del","args":{"vm":"nope"}}', 'unknown-vm'],
      ['{"id":12,"cmd":"debug/stall","args":{"vm":"v1","ms":-5}}', 'invalid-args'],
      ['{"id":13,"cmd":"debug/stall","args":{"vm":"v1","ms":"50"}}', 'invalid-args'],
      ['{"id":14,"cmd":"stats/show","args":{"vm":"v1","extra":true}}', 'invalid-args'],
      ['{"id":15,"cmd":"fdb/import","args":{"entries":[{"mac":"02:aa:00:00:00:01","kind":"learned","port":"uplink"}]}}', 'no-uplink'],
      ['{"id":16,"cmd":"fdb/import","args":{"entries":"all"}}', 'invalid-args'],
      ['{"id":17,"cmd":"vm/announce","args":{"vm":"v1"}}', 'no-uplink'],
      [`{"id":18,"cmd":"vm/add","args":{"vm":"v9","mac":"02:00:00:00:00:09","socket":"/${'x'.repeat(200)}"}}`, 'invalid-args'],
      [`{"id":19,"cmd":"gen/info","pad":"${'x'.repeat(70 * 1024)}"}`, 'line-too-long'],
    ];
    for (const [line, code] of bad) {
      const r = await gen.ctl.sendRaw(line);
      assert.equal(r.ok, false, `accepted: ${line.slice(0, 80)}`);
      if (!r.ok) {
        assert.equal(r.error.code, code, `${line.slice(0, 80)} -> ${r.error.message}`);
        assert.ok(r.error.message.length > 0);
      }
    }
    // the typed client refuses bad arguments before sending them, naming the field
    await assert.rejects(gen.ctl.request(dp.vmAdd, { vm: 'v9', mac: 'nope' }), /mac/);
    // a handler error arrives as CtlError with its code
    await assert.rejects(gen.ctl.request(dp.vmDel, { vm: 'v7' }), (e: unknown) => e instanceof CtlError && e.code === 'unknown-vm');
    // a good request on the same connection still works, and nothing changed
    assert.deepEqual(await gen.ctl.request(dp.vmList, {}), before);
    assert.equal(existsSync(join(gen.opts.runDir, 'vhost', 'v9.sock')), false);
    const sum = await probe.summary;
    assert.equal(sum.totals.lost, 0);
    assert.ok(sum.totals.received > 60000);
  });

  test('registers exactly the commands the TypeScript side defines, each with usage text', async () => {
    const gen = await bed.dp('L');
    const { commands } = await gen.ctl.request(dp.listCommands, {});
    const names = commands.map((c) => c.name).sort();
    const defined = [...Object.values(dp).map((c) => c.cmd), 'events/subscribe'].sort();
    assert.deepEqual(names, defined);
    for (const c of commands) assert.ok(c.usage.startsWith(c.name), `usage of ${c.name}`);
  });

  test('prints its version, reports its generation, serves telemetry, and exits cleanly on SIGTERM', async () => {
    const out = execFileSync(nativeBin('hitless-dp'), ['--version'], { encoding: 'utf8' });
    assert.match(out, /^hitless-dp \S+ \(DPDK 22\.11/);
    const gen = await bed.dp('T');
    await gen.addVm('v1', vmMac(1));
    const info = await gen.ctl.request(dp.genInfo, {});
    assert.equal(info.gen_id, 'T');
    assert.equal(info.version, out.split(' ')[1]);
    assert.equal(info.fwd.name, 'l2');
    assert.equal(info.vms, 1);
    // the same counters through DPDK telemetry, read with DPDK's own client
    const tel = execFileSync('dpdk-telemetry.py', ['-f', 'hl-dp-T'], { input: '/hitless/stats,v1\n/hitless/gen\n', encoding: 'utf8' });
    assert.match(tel, /"\/hitless\/stats":\s*{[^}]*"rx_pkts": 0/);
    assert.match(tel, /"gen_id": "T"/);
    const sock = gen.vhostSocket('v1');
    assert.ok(existsSync(sock));
    const r = await gen.stop();
    assert.deepEqual(r, { code: 0, signal: null });
    assert.equal(existsSync(sock), false, 'vhost socket removed');
    assert.equal(existsSync(join(gen.opts.runDir, 'dp.pid')), false, 'pidfile removed');
  });
});

describe('hitless-dp uplink and FDB', () => {
  const bed = new Testbed('up');
  after(() => bed.cleanup());
  let links: [string, string];
  before(() => {
    links = bed.veth();
  });

  test('forwards between VMs of two generations across a veth uplink with 0 lost', async () => {
    // generation A serves v1,v2 with uplink on one end; generation B serves v3,v4 on the other
    const a = await bed.dp('UA', { uplink: links[0] });
    const b = await bed.dp('UB', { uplink: links[1] });
    for (const [i, vm] of VMS.entries()) await (i < 2 ? a : b).addVm(vm, vmMac(i + 1));
    const probe = await bed.probe({
      name: 'up',
      vms: VMS.map((vm, i) => ({ name: vm, mac: vmMac(i + 1), socket: (i < 2 ? a : b).vhostSocket(vm) })),
      flows: [
        { src: 'v1', dst: 'v3', pps: 5000 },
        { src: 'v4', dst: 'v2', pps: 5000 },
        { src: 'v1', dst: 'v2', pps: 5000 },
      ],
      durationS: 4,
    });
    const sum = await probe.summary;
    assert.equal(sum.totals.lost, 0, JSON.stringify(sum.flows.map((f) => [f.src, f.dst, f.offered, f.lost])));
    for (const f of sum.flows) assert.ok(f.received > 5000 * 4 * 0.9);
    const sa = await a.ctl.request(dp.statsShow, {});
    // v1->v3 left A through its uplink; v4->v2 came in through it
    assert.ok(sa.uplink!.tx_pkts >= sum.flows[0]!.received);
    assert.ok(sa.uplink!.rx_pkts >= sum.flows[1]!.received);
    // each generation announced its VMs on the uplink (gratuitous RARP), so the other learned them
    assert.ok(sa.uplink!.announces >= 2);
    const fa = await a.ctl.request(dp.fdbExport, {});
    for (const mac of [vmMac(3), vmMac(4)])
      assert.ok(fa.entries.some((e) => e.mac === mac && e.kind === 'learned' && e.port === 'uplink'), `A learned ${mac}`);
  });

  test('fdb/export -> fdb/import starts a new generation warm; bad entries change nothing', async () => {
    const old = await bed.dp('FA', { uplink: links[0] });
    await old.addVm('v1', vmMac(1));
    await old.addVm('v2', vmMac(2));
    const hosts = ['02:aa:00:00:00:01', '02:aa:00:00:00:02', '02:aa:00:00:00:03'];
    sendFrames(links[1], hosts.map(broadcastFrom));
    let exported = await old.ctl.request(dp.fdbExport, {});
    for (let i = 0; i < 50 && exported.entries.filter((e) => e.kind === 'learned').length < 3; i++) {
      await new Promise((r) => setTimeout(r, 20));
      exported = await old.ctl.request(dp.fdbExport, {});
    }
    const learned = exported.entries.filter((e) => e.kind === 'learned').map((e) => e.mac).sort();
    assert.deepEqual(learned, hosts);
    await old.stop();

    // the new generation has v1 only; v2's entry is reported absent, not an error
    const neu = await bed.dp('FB', { uplink: links[0] });
    await neu.addVm('v1', vmMac(1));
    const before = await neu.ctl.request(dp.genInfo, {});
    const badEntries = [...exported.entries, { mac: 'not-a-mac', kind: 'learned', port: 'uplink' }];
    const r = await neu.ctl.sendRaw(JSON.stringify({ id: 1, cmd: 'fdb/import', args: { entries: badEntries } }));
    assert.ok(!r.ok && r.error.code === 'invalid-args' && r.error.message.includes(`entries[${badEntries.length - 1}].mac`));
    assert.equal((await neu.ctl.request(dp.genInfo, {})).fdb_entries, before.fdb_entries, 'nothing imported');
    const res = await neu.ctl.request(dp.fdbImport, { entries: exported.entries });
    assert.equal(res.imported, 3);
    assert.deepEqual(res.absent_vms, ['v2']);
    const now = await neu.ctl.request(dp.fdbExport, {});
    assert.deepEqual(now.entries.filter((e) => e.kind === 'learned').map((e) => e.mac).sort(), hosts);
  });
});
