// Integration tests of hitless-dp's control socket, start-up and shutdown, with real processes.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CtlError } from './ctlClient.js';
import { dp } from '../../../protocol/native/dp.js';
import { ctl } from '../../../protocol/native/ctl.js';
import { nativeBin } from '../../../testing/procs.js';
import { assertLossOnlyStarved } from '../../../testing/lossReport.js';
import { labVms, Testbed, vmMac } from '../../../testing/testbed.js';

describe('hitless-dp control socket', () => {
  const bed = new Testbed('ctl');
  after(() => bed.cleanup());

  test('answers every kind of bad input with an error, changes nothing, and keeps forwarding', async (t) => {
    const gen = await bed.dp('C');
    const vms = await gen.serve(labVms(2));
    const probe = await bed.probe({
      name: 'ctl',
      vms,
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
    assertLossOnlyStarved(t, sum, probe.events, [await gen.ctl.request(dp.statsShow, {})]);
    assert.ok(sum.totals.received > 60000);
  });

  test('registers exactly the commands the TypeScript side defines, each with usage text', async () => {
    const gen = await bed.dp('L');
    const { commands } = await gen.ctl.request(dp.listCommands, {});
    const names = commands.map((c) => c.name).sort();
    const defined = [...Object.values(dp).map((c) => c.method), ctl.eventsSubscribe.method].sort();
    assert.deepEqual(names, defined);
    for (const c of commands) assert.ok(c.usage.startsWith(c.name), `usage of ${c.name}`);
  });

  test('refuses to start without a usable forwarding stage or with bad options, saying why', async () => {
    const run = (args: string[]) => {
      try {
        execFileSync(nativeBin('hitless-dp'), ['-l', '1', '--no-huge', '-m', '128', '--no-pci', '--log-level=error', '--', ...args], {
          stdio: 'pipe',
          encoding: 'utf8',
        });
        return { code: 0, stderr: '' };
      } catch (e) {
        const err = e as { status: number; stderr: string };
        return { code: err.status, stderr: err.stderr };
      }
    };
    const dir = join(bed.dir, 'bad');
    let r = run(['--gen-id', 'X', '--run-dir', dir, '--fwd-lib', '/nonexistent/fwd.so']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /forwarding stage: cannot load \/nonexistent\/fwd\.so/);
    r = run(['--gen-id', 'X', '--run-dir', dir, '--fwd-lib', '/lib/x86_64-linux-gnu/libjansson.so.4']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /libjansson\.so\.4 is not a Hitless forwarding stage \(no 'hitless_fwd_ops' symbol\)/);
    r = run(['--gen-id', 'bad name', '--run-dir', dir]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--gen-id: 'bad name' is not a valid name/);
    r = run(['--gen-id', 'X', '--run-dir', dir, '--idle-max-us', 'lots']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--idle-max-us: 'lots' is not a number/);
    r = run(['--run-dir', dir]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--gen-id and --run-dir are required/);
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
    const tel = execFileSync('dpdk-telemetry.py', ['-f', gen.opts.filePrefix!], { input: '/hitless/stats,v1\n/hitless/gen\n', encoding: 'utf8' });
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
