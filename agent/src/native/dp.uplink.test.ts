// Integration tests of hitless-dp's uplink (net_af_packet on real veths) and FDB export/import.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { dp } from '../../../protocol/native/dp.js';
import { measured } from '../../../protocol/native/probe.js';
import { assertLossOnlyStarved } from '../../../testing/lossReport.js';
import { broadcastFrom, captureFrames, sendFrames, labVms, Testbed, vmMac } from '../../../testing/testbed.js';

describe('hitless-dp uplink and FDB', () => {
  const bed = new Testbed('up');
  after(() => bed.cleanup());
  let links: [string, string];
  before(() => {
    links = bed.veth();
  });

  test('forwards between VMs of two generations across a veth uplink with 0 lost', async (t) => {
    // generation A serves v1,v2 with uplink on one end; generation B serves v3,v4 on the other
    const a = await bed.dp('UA', { uplink: links[0] });
    const b = await bed.dp('UB', { uplink: links[1] });
    const [v1, v2, v3, v4] = labVms(4);
    const vms = [...(await a.serve([v1!, v2!])), ...(await b.serve([v3!, v4!]))];
    const probe = await bed.probe({
      name: 'up',
      vms,
      flows: [
        { src: 'v1', dst: 'v3', pps: 5000 },
        { src: 'v4', dst: 'v2', pps: 5000 },
        { src: 'v1', dst: 'v2', pps: 5000 },
      ],
      durationS: 4,
    });
    const sum = await probe.summary;
    assertLossOnlyStarved(t, sum, probe.events, await Promise.all([a, b].map((g) => g.ctl.request(dp.statsShow, {}))));
    assert.equal(measured(sum).length, 3, 'no frames arrived at a VM they were not sent to');
    for (const f of measured(sum)) assert.ok(f.received > 5000 * 4 * 0.9);
    const sa = await a.ctl.request(dp.statsShow, {});
    // v1->v3 left A through its uplink; v4->v2 came in through it
    assert.ok(sa.uplink!.tx_pkts >= measured(sum)[0]!.received);
    assert.ok(sa.uplink!.rx_pkts >= measured(sum)[1]!.received);
    // each generation announced its VMs on the uplink (gratuitous RARP), so the other learned them
    assert.ok(sa.uplink!.announces >= 2);
    const fa = await a.ctl.request(dp.fdbExport, {});
    for (const mac of [vmMac(3), vmMac(4)])
      assert.ok(fa.entries.some((e) => e.mac === mac && e.kind === 'learned' && e.port === 'uplink'), `A learned ${mac}`);
  });

  test('announces a VM on the uplink with a gratuitous RARP carrying its MAC', async () => {
    const gen = await bed.dp('AN', { uplink: links[0] });
    await gen.addVm('v1', vmMac(1));
    const cap = captureFrames(links[1], 0x8035, 1500);
    await cap.ready;
    await gen.ctl.request(dp.vmAnnounce, { vm: 'v1' });
    const frames = await cap.frames;
    assert.ok(frames.length >= 1, 'a RARP frame reached the other end of the uplink');
    const f = frames[0]!;
    assert.equal(f.subarray(0, 6).toString('hex'), 'ffffffffffff', 'broadcast');
    assert.equal(f.subarray(6, 12).toString('hex'), vmMac(1).replaceAll(':', ''), 'source = VM MAC');
    assert.equal(f.readUInt16BE(12), 0x8035);
    assert.equal(f.readUInt16BE(20), 3, 'RARP reverse request');
    assert.equal(f.subarray(22, 28).toString('hex'), vmMac(1).replaceAll(':', ''), 'sender hardware address = VM MAC');
    const st = await gen.ctl.request(dp.statsShow, {});
    assert.equal(st.uplink!.announces, 1);
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
