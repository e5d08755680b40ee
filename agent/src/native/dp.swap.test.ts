// Integration tests of lib/swap and lib/rollback: the forwarding stage replaced in place inside a
// running generation, under traffic between probe VMs, with learned uplink hosts in the FDB.
// Real DPDK processes (--no-huge), real vhost-user sessions, a real veth uplink.
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { CtlError } from './ctlClient.js';
import { dp, type FdbEntry } from '../../../protocol/native/dp.js';
import { measured } from '../../../protocol/native/probe.js';
import { nativeBin, type DpProcess } from '../../../testing/procs.js';
import { assertLossOnlyStarved } from '../../../testing/lossReport.js';
import { labVms, Testbed, vmMac } from '../../../testing/testbed.js';

const build = resolve(dirname(fileURLToPath(import.meta.url)), '../../../native/build');
const LAYOUT1 = join(build, 'src/fwd/hitless-fwd-l2-layout1.so'); // the L2 stage as 1.0.x shipped it
const LAYOUT2 = nativeBin('hitless-fwd-l2.so'); // this release's: learned entries carry a last-seen stamp
const fixture = (f: string): string => join(build, 'tests', `fwd-fixture-${f}.so`);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const withoutAge = (es: FdbEntry[]): FdbEntry[] =>
  es.map(({ mac, kind, port }) => ({ mac, kind, port })).sort((a, b) => a.mac.localeCompare(b.mac));

async function refused(gen: DpProcess, path: string): Promise<CtlError> {
  const before = await gen.ctl.request(dp.libInfo, {});
  const e = await gen.ctl.request(dp.libSwap, { path }).then(
    () => assert.fail(`lib/swap ${path} was accepted`),
    (err: unknown) => err,
  );
  assert.ok(e instanceof CtlError, String(e));
  assert.deepEqual(await gen.ctl.request(dp.libInfo, {}), before, `${path}: the running stage changed`);
  return e;
}

describe('lib/swap: the forwarding stage replaced inside a running generation', () => {
  const bed = new Testbed('swap');
  after(() => bed.cleanup());
  let links: [string, string];
  before(() => {
    links = bed.veth();
  });

  test('1 -> 2 -> 1 under traffic: 0 lost, the FDB (learned hosts too) survives both conversions, refusals change nothing', async (t) => {
    // A runs v1,v2 on the layout-1 stage; B runs v3,v4 across the uplink, so A has learned them
    const a = await bed.dp('SA', { uplink: links[0], extraArgs: ['--fwd-lib', LAYOUT1] });
    const b = await bed.dp('SB', { uplink: links[1] });
    const [v1, v2, v3, v4] = labVms(4);
    const probe = await bed.probe({
      name: 'swap',
      vms: [...(await a.serve([v1!, v2!])), ...(await b.serve([v3!, v4!]))],
      flows: [
        { src: 'v1', dst: 'v2', pps: 5000 }, // inside A
        { src: 'v4', dst: 'v1', pps: 5000 }, // into A from the uplink
        { src: 'v2', dst: 'v3', pps: 5000 }, // out of A to a learned host
      ],
      durationS: 6,
    });
    await sleep(1200);
    const info0 = await a.ctl.request(dp.genInfo, {});
    assert.equal(info0.fwd.layout, 1);
    const fdb0 = (await a.ctl.request(dp.fdbExport, {})).entries;
    for (const mac of [vmMac(3), vmMac(4)])
      assert.ok(fdb0.some((e) => e.mac === mac && e.kind === 'learned'), `A learned ${mac} before the swap`);
    assert.ok(fdb0.every((e) => e.age_s === undefined), 'layout 1 keeps no last-seen stamp');

    // the dry run says what the swap will do, and changes nothing
    const check = await a.ctl.request(dp.libCheck, { path: LAYOUT2 });
    assert.equal(check.converted_by, 'to');
    assert.equal((await a.ctl.request(dp.genInfo, {})).fwd.layout, 1);
    assert.equal((await a.ctl.request(dp.libCheck, { path: fixture('nomig') }).catch((e: CtlError) => e.code)), 'no-migration');

    // the prepare step opens and checks it ahead of time; the swap then only switches
    const staged = await a.ctl.request(dp.libLoad, { path: LAYOUT2 });
    assert.equal(staged.converted_by, 'to');
    assert.equal((await a.ctl.request(dp.libInfo, {})).staged?.path, LAYOUT2);
    assert.equal((await a.ctl.request(dp.genInfo, {})).fwd.layout, 1, 'loading is not swapping');

    // forward: the incoming layout-2 stage converts every word
    const up = await a.ctl.request(dp.libSwap, { path: LAYOUT2 });
    assert.equal(up.kind, 'swap');
    assert.equal(up.preloaded, true);
    assert.equal(up.from.layout, 1);
    assert.equal(up.to.layout, 2);
    assert.equal(up.converted_by, 'to');
    assert.ok(up.migrated >= fdb0.length, `migrated ${up.migrated} of ${fdb0.length}`);
    assert.ok(up.window_ns > 0 && up.at_ns >= up.asked_ns);
    const fdb1 = (await a.ctl.request(dp.fdbExport, {})).entries;
    assert.deepEqual(withoutAge(fdb1).filter((e) => fdb0.some((o) => o.mac === e.mac)), withoutAge(fdb0));
    for (const e of fdb1.filter((x) => x.kind === 'learned')) assert.ok(e.age_s !== undefined && e.age_s <= 2, `${e.mac} stamped: ${e.age_s}`);
    const lib1 = await a.ctl.request(dp.libInfo, {});
    assert.equal(lib1.stage.path, LAYOUT2);
    assert.equal(lib1.previous?.path, LAYOUT1);
    assert.equal(lib1.staged, null, 'the staged stage is the running one now');
    await sleep(400);

    // refusals, each naming its cause; the layout-2 stage goes on forwarding
    assert.equal((await refused(a, fixture('abi'))).code, 'abi-mismatch');
    assert.equal((await refused(a, fixture('no_ops'))).code, 'not-a-stage');
    assert.equal((await refused(a, '/etc/hostname')).code, 'not-loadable');
    assert.equal((await refused(a, join(build, 'no-such-stage.so'))).code, 'not-loadable');
    const failing = await refused(a, fixture('migrate'));
    assert.equal(failing.code, 'migrate-failed');
    assert.match(failing.message, /could not convert FDB entry ([0-9a-f]{2}:){5}[0-9a-f]{2} from layout 2 to 9.*goes on forwarding/);
    assert.equal((await refused(a, LAYOUT2)).code, 'already-running');
    await sleep(400);

    // back: the outgoing layout-2 stage converts its words for the layout-1 one
    const down = await a.ctl.request(dp.libRollback, {});
    assert.equal(down.kind, 'rollback');
    assert.equal(down.preloaded, false);
    assert.equal(down.to.path, LAYOUT1);
    assert.equal(down.converted_by, 'from');
    const fdb2 = (await a.ctl.request(dp.fdbExport, {})).entries;
    assert.deepEqual(withoutAge(fdb2).filter((e) => fdb0.some((o) => o.mac === e.mac)), withoutAge(fdb0));
    assert.ok(fdb2.every((e) => e.age_s === undefined));
    assert.equal((await a.ctl.request(dp.libInfo, {})).swaps, 2);
    // a stage loaded ahead that becomes the running one meanwhile (by lib/rollback) is not
    // swapped for itself, and the stage to roll back to stays loaded
    await a.ctl.request(dp.libLoad, { path: LAYOUT2 });
    assert.equal((await a.ctl.request(dp.libRollback, {})).to.path, LAYOUT2);
    assert.equal(await a.ctl.request(dp.libSwap, { path: LAYOUT2 }).then(() => 'swapped', (e: CtlError) => e.code), 'already-running');
    const lib3 = await a.ctl.request(dp.libInfo, {});
    assert.deepEqual([lib3.stage.path, lib3.previous?.path, lib3.staged, lib3.swaps], [LAYOUT2, LAYOUT1, null, 3]);
    assert.equal((await a.ctl.request(dp.libRollback, {})).to.path, LAYOUT1);

    const sum = await probe.summary;
    assertLossOnlyStarved(t, sum, probe.events, [await a.ctl.request(dp.statsShow, {})]);
    assert.equal(sum.totals.dup, 0);
    for (const f of measured(sum)) assert.ok(f.received >= 5000 * 6 * 0.9, `${f.src}->${f.dst} received ${f.received}`);
    const st = await a.ctl.request(dp.statsShow, {});
    for (const vm of ['v1', 'v2']) assert.deepEqual(st.vms[vm]!.drops, { ring_full: 0, no_dest: 0, not_ready: 0, stalled: 0 });
  });

  test('refused: lib/rollback with nothing swapped in, a layout no stage converts to, a failing migrate hook', async () => {
    const g = await bed.dp('SR', { extraArgs: ['--fwd-lib', LAYOUT2] });
    await g.serve(labVms(1));
    assert.equal((await refused(g, '/dev/null')).code, 'unsafe-file');
    // a stage anyone could have written is not run
    const loose = join(bed.dir, 'loose-stage.so');
    copyFileSync(LAYOUT1, loose);
    chmodSync(loose, 0o666);
    const unsafe = await refused(g, loose);
    assert.equal(unsafe.code, 'unsafe-file');
    assert.match(unsafe.message, /writable only by its owner \(mode 0666, uid 0\)/);
    chmodSync(loose, 0o755);
    assert.equal((await g.ctl.request(dp.libCheck, { path: loose })).to.layout, 1, 'the same file, once only its owner may write it');
    const e = await g.ctl.request(dp.libRollback, {}).then(
      () => assert.fail('rollback accepted'),
      (err: unknown) => err as CtlError,
    );
    assert.equal(e.code, 'no-previous');
    // layout 2 -> 9: neither the layout-2 stage nor this one (no hook) converts
    const none = await refused(g, fixture('nomig'));
    assert.equal(none.code, 'no-migration');
    assert.match(none.message, /state layout 2 \(l2 .*\) -> 9 \(fixture .*\): neither stage converts it/);
    // layout 2 -> 9 by a hook that fails
    assert.equal((await refused(g, fixture('migrate'))).code, 'migrate-failed');
    assert.equal((await g.ctl.request(dp.libLoad, { path: fixture('nomig') }).catch((e: CtlError) => e.code)), 'no-migration');
    assert.equal((await g.ctl.request(dp.libLoad, { path: LAYOUT2 }).catch((e: CtlError) => e.code)), 'already-running');
    // a stage loaded ahead and not swapped in is closed again on request
    assert.equal((await g.ctl.request(dp.libLoad, { path: LAYOUT1 })).staged.path, LAYOUT1);
    assert.equal((await g.ctl.request(dp.libUnload, {})).unloaded.path, LAYOUT1);
    assert.equal((await g.ctl.request(dp.libInfo, {})).staged, null);
    assert.equal((await g.ctl.request(dp.libUnload, {}).catch((e: CtlError) => e.code)), 'nothing-staged');
    assert.equal((await g.ctl.request(dp.genInfo, {})).fwd.path, LAYOUT2);
  });
});
