// The OpenFlow 1.4 messages a switch sends, byte for byte as the spec lays them out, and the
// port descriptions it reads; the same messages against a real ovs-vswitchd are in ovs.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { flowMod, portCounters, portDescs } from './openflow.js';
import { objectEnd } from './unixctl.js';

test("a switch's flow mods: an add matching in_port and eth_dst with an output, and a delete of every flow of a cookie and MAC", () => {
  const add = flowMod({ command: 'add', cookie: 0x486c64n, priority: 65001, inPort: 300, ethDst: 'fa:16:3e:00:00:01', output: 3 }, 7);
  assert.equal(add.readUInt8(0), 5, 'OpenFlow 1.4');
  assert.equal(add.readUInt8(1), 14, 'OFPT_FLOW_MOD');
  assert.equal(add.readUInt16BE(2), add.length);
  assert.equal(add.readUInt32BE(4), 7);
  assert.equal(add.readBigUInt64BE(8), 0x486c64n);
  assert.equal(add.readBigUInt64BE(16), 0n, 'an add has no cookie mask');
  assert.deepEqual([add.readUInt8(24), add.readUInt8(25), add.readUInt16BE(30)], [0, 0, 65001]);
  // match: OXM, 4 + 8 (in_port) + 10 (eth_dst) bytes, padded to 24
  assert.deepEqual([add.readUInt16BE(48), add.readUInt16BE(50)], [1, 22]);
  assert.deepEqual([add.readUInt32BE(52), add.readUInt32BE(56)], [0x80000004, 300]);
  assert.equal(add.readUInt32BE(60), 0x80000606);
  assert.equal(add.subarray(64, 70).toString('hex'), 'fa163e000001');
  // apply-actions with one output to port 3
  assert.deepEqual([add.readUInt16BE(72), add.readUInt16BE(74), add.readUInt16BE(80), add.readUInt16BE(82), add.readUInt32BE(84)], [4, 24, 0, 16, 3]);
  assert.equal(add.length, 96);

  const del = flowMod({ command: 'delete', cookie: 0x486c64n, ethDst: 'FA:16:3E:00:00:01' }, 8);
  assert.equal(del.readBigUInt64BE(16), 0xffffffffffffffffn, 'only flows with exactly this cookie');
  assert.deepEqual([del.readUInt8(24), del.readUInt8(25)], [0xff, 3], 'OFPFC_DELETE in every table');
  assert.equal(del.length, 48 + 16, 'no instructions');
  assert.throws(() => flowMod({ command: 'add', cookie: 1n, ethDst: 'fa:16:3e:00:01', output: 1 }, 9), /not a MAC address/);
});

test("the ports' descriptions a port-desc reply carries: each name and whether OVS sees it live", () => {
  const port = (no: number, name: string, state: number) => {
    const b = Buffer.alloc(64);
    b.writeUInt32BE(no, 0);
    b.writeUInt16BE(64, 4);
    b.write(name, 16, 'latin1');
    b.writeUInt32BE(state, 36);
    return b;
  };
  assert.deepEqual(portDescs(Buffer.concat([port(3, 'v1', 4), port(300, 'hold', 0), port(0xfffffffe, 'br0', 1)])), [
    { no: 3, name: 'v1', live: true },
    { no: 300, name: 'hold', live: false },
    { no: 0xfffffffe, name: 'br0', live: false },
  ]);
  const short = port(3, 'v1', 4);
  short.writeUInt16BE(200, 4);
  assert.throws(() => portDescs(short), /a port description of 200 bytes/);
});

test("every port's counters a port-stats reply carries, by port number, with properties after them skipped and a counter the port lacks read as 0", () => {
  const entry = (no: number, c: [number, number, number, number], props = 0) => {
    const b = Buffer.alloc(112 + props);
    b.writeUInt16BE(b.length, 0);
    b.writeUInt32BE(no, 4);
    b.writeBigUInt64BE(BigInt(c[0]), 16);
    b.writeBigUInt64BE(BigInt(c[1]), 24);
    b.writeBigUInt64BE(7n, 32); // bytes: not counters of frames
    b.writeBigUInt64BE(BigInt(c[2]), 48);
    b.writeBigUInt64BE(BigInt(c[3]), 56);
    return b;
  };
  const m = portCounters(Buffer.concat([entry(3, [10, 20, 1, 2], 40), entry(300, [0, 5, 0, 0])]));
  assert.deepEqual([...m], [
    [3, { rx: 10n, tx: 20n, rxDropped: 1n, txDropped: 2n }],
    [300, { rx: 0n, tx: 5n, rxDropped: 0n, txDropped: 0n }],
  ]);
  // a vhost port whose device is not running: every counter all ones ("?" to ovs-ofctl)
  const stopped = entry(4, [0, 0, 0, 0]);
  for (const at of [16, 24, 48, 56]) stopped.writeBigUInt64BE(0xffffffffffffffffn, at);
  assert.deepEqual(portCounters(stopped).get(4), { rx: 0n, tx: 0n, rxDropped: 0n, txDropped: 0n });
  const cut = entry(3, [1, 1, 1, 1]).subarray(0, 100);
  assert.throws(() => portCounters(cut), /port stats of 112 bytes at 0 of 100/);
});

test("where a unixctl reply ends: the first whole JSON object, braces inside strings not counted", () => {
  const a = '{"id":0,"result":"a } b \\" {","error":null}';
  assert.equal(objectEnd(a + '{"id":1'), a.length);
  assert.equal(objectEnd('{"id":0,"result":"{"'), -1);
});
