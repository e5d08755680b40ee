// hitless-hold (native/src/hold), an OVS-DPDK generation's holding port, alone: what a VM's
// switch relies on. Frames that come while it holds wait and come back in order on release,
// none lost; between holds it sends each frame straight back; a multicast or broadcast frame
// never comes back (a flood through the hold port must not go round the generations).
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hold } from '../../../protocol/native/hold.js';
import { nativeBin } from '../../../testing/procs.js';
import { CtlClient } from './ctlClient.js';

const ns = `hlhold${process.pid % 100000}`;
const dir = mkdtempSync(join(tmpdir(), 'hl-hold-'));
const ctlPath = join(dir, 'hold.sock');

/** Send frames (dst MAC, sequence number) into the generation's end and return the sequence
 * numbers that come back within 300 ms, in arrival order (python3's AF_PACKET, in the namespace). */
function exchange(frames: { dst: string; seq: number }[], release = false): number[] {
  const script = [
    'import socket, struct, sys, json',
    "a = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5)); a.bind(('hga', 0)); a.settimeout(0.3)",
    'for d, n in json.loads(sys.argv[1]):',
    "    a.send(bytes.fromhex(d.replace(':', '')) + bytes.fromhex('020000000099') + b'\\x88\\xb5' + struct.pack('!I', n) + bytes(46))",
    // release: ask for it from here, so that what comes back is read on this same socket
    'if sys.argv[2]:',
    '    c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[2])',
    '    c.sendall(b\'{"id":1,"cmd":"hold/release","args":{}}\\n\'); c.makefile().readline(); c.close()',
    'got = []',
    'try:',
    '    while True:',
    '        f = a.recv(2000)',
    "        got.append(struct.unpack('!I', f[14:18])[0])",
    'except socket.timeout:',
    '    pass',
    'print(json.dumps(got))',
  ].join('\n');
  return JSON.parse(execFileSync('ip', ['netns', 'exec', ns, 'python3', '-c', script, JSON.stringify(frames.map((f) => [f.dst, f.seq])), release ? ctlPath : ''], { encoding: 'utf8' })) as number[];
}

describe('hitless-hold', () => {
  let proc: ChildProcess;
  let ctl: CtlClient;
  before(async () => {
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'add', 'hga', 'type', 'veth', 'peer', 'name', 'hgb']);
    for (const i of ['hga', 'hgb']) {
      execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${i}.disable_ipv6=1`]);
      execFileSync('ip', ['-n', ns, 'link', 'set', i, 'up']);
    }
    proc = spawn('ip', ['netns', 'exec', ns, nativeBin('hitless-hold'), '--iface', 'hgb', '--ctl', ctlPath, '--pidfile', join(dir, 'hold.pid')], { stdio: 'ignore' });
    for (let i = 0; ; i++) {
      try {
        ctl = await CtlClient.connect(ctlPath, 500);
        break;
      } catch (e) {
        if (i > 40) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });
  after(() => {
    ctl?.close();
    proc?.kill('SIGTERM');
    execFileSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  });

  const vm = '02:00:00:00:00:07';
  const seqs = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

  test('between holds each frame comes straight back; held frames wait and all come back in order on release, paced', async () => {
    assert.deepEqual(exchange(seqs(1, 5).map((seq) => ({ dst: vm, seq }))), seqs(1, 5));
    await ctl.request(hold.holdStart, {});
    assert.deepEqual(exchange(seqs(100, 600).map((seq) => ({ dst: vm, seq }))), [], 'nothing comes back while holding');
    const t = performance.now();
    const { released } = await ctl.request(hold.holdRelease, {});
    assert.equal(released, 600);
    // 600 frames at 32 per 200 us: not one burst (a VM's ring takes its size and no more)
    assert.ok(performance.now() - t >= 3, `released in ${performance.now() - t} ms`);
    const st = await ctl.request(hold.statsShow, {});
    assert.deepEqual([st.holding, st.holds, st.released, st.dropped, st.send_errors], [false, 1, 600, 0, 0]);
  });

  test('the released frames arrive oldest first, and a broadcast or multicast frame never comes back', async () => {
    await ctl.request(hold.holdStart, {});
    const back = exchange([...seqs(1000, 50).map((seq) => ({ dst: vm, seq })), { dst: 'ff:ff:ff:ff:ff:ff', seq: 5000 }, { dst: '01:00:5e:00:00:01', seq: 5001 }], true);
    assert.deepEqual(back, seqs(1000, 50));
    assert.deepEqual(exchange([{ dst: 'ff:ff:ff:ff:ff:ff', seq: 3000 }, { dst: vm, seq: 3001 }]), [3001]);
    assert.ok((await ctl.request(hold.statsShow, {})).ignored >= 3);
  });
});
