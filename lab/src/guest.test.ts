// Real QEMU guests (Linux virtio-net) through the keeper and two generations: handoffs in both
// socket layouts, driver reload and reboot, and failover, measured through the guest by the
// probe flow it reflects, with the guest's own evidence (carrier changes, kernel warnings).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { keeper } from '../../protocol/native/keeper.js';
import { probe as probeCtl } from '../../protocol/native/probe.js';
import { explainLoss, type SwitchMark } from '../../testing/lossReport.js';
import type { ProbeProcess } from '../../testing/procs.js';
import { Testbed, type GuestHost } from '../../testing/testbed.js';

const PPS = 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Hand the guest to gen (pre-loaded first, as an operator's prepare step does); its mark. */
async function handoff(h: GuestHost, gen: 'A' | 'B'): Promise<SwitchMark> {
  await h.k.ctl.request(keeper.sessionPreload, { vm: h.vm, gen });
  await sleep(100);
  const r = await h.k.ctl.request(keeper.handoffStart, { vm: h.vm, gen });
  return { vm: h.vm, label: `-> ${gen}`, start_ns: r.timing.quiesce_ns, end_ns: r.timing.resumed_ns };
}

/** n handoffs, alternating B, A, ... starting from where the guest is. */
async function handoffs(h: GuestHost, n: number, first: 'A' | 'B' = 'B'): Promise<SwitchMark[]> {
  const marks: SwitchMark[] = [];
  for (let i = 0; i < n; i++) {
    marks.push(await handoff(h, (i % 2 === 0) === (first === 'B') ? 'B' : 'A'));
    await sleep(200);
  }
  return marks;
}

/** The keeper pre-loads gen again on its own once the renegotiated session settles. */
async function preloadedAgain(h: GuestHost, gen: string): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    const s = await h.k.ctl.request(keeper.sessionShow, { vm: h.vm });
    if (s.preloaded.includes(gen)) return;
    assert.ok(Date.now() < until, `${gen} not pre-loaded again after the guest's reset: ${JSON.stringify(s)}`);
    await sleep(100);
  }
}

/** Stop the probe: every frame it sent came back from the guest exactly once. */
async function assertNothingLost(h: GuestHost, probe: ProbeProcess, marks: SwitchMark[]): Promise<void> {
  const sum = await probe.stop();
  const t = sum.totals;
  const why = () => `${explainLoss(sum, probe.events, marks)}\nguest console:\n${h.guest.log}`;
  assert.ok(t.offered > PPS, `the probe sent only ${t.offered} frames`);
  assert.equal(t.lost, 0, why());
  assert.equal(t.dup, 0, why());
  assert.equal(t.received, t.offered, why());
}

/** The guest saw no carrier change and logged no kernel warning since `since` events. */
async function assertGuestUntouched(h: GuestHost, since: number, carrierChanges: number): Promise<void> {
  const later = h.guest.events.slice(since);
  assert.deepEqual(later.filter((e) => e.event === 'carrier'), [], 'carrier changes on the guest console');
  const ev = h.guest.evidence();
  assert.deepEqual(ev.kernel_warnings, [], 'guest kernel warnings');
  assert.equal((await h.guest.stats()).carrier_changes, carrierChanges, 'carrier changes the guest kernel counted');
}

describe('QEMU guest with 2 queue pairs (2 vCPUs)', () => {
  let bed: Testbed;
  let h: GuestHost;
  before(async () => {
    bed = new Testbed('guest-mq');
    h = await bed.guestHost({ server: false, queues: 2 });
  });
  after(async () => bed.cleanup());

  test('flows on both queue pairs are handed between generations 10 times with nothing lost', async () => {
    const ready = h.guest.events.find((e) => e.event === 'ready');
    assert.ok(ready?.event === 'ready' && ready.queues === 2, `the guest runs 2 queue pairs: ${JSON.stringify(ready)}`);
    const since = h.guest.events.length;
    const s0 = await h.guest.stats();
    // 16 flows told apart by their UDP port: the switch spreads them over both receive queues
    const probe = await bed.reflectProbe(h, 100, { flows: 16, gapUs: 25000 });
    await sleep(500);
    const marks = await handoffs(h, 10);
    await sleep(500);
    await assertNothingLost(h, probe, marks);
    const s1 = await h.guest.stats();
    const perQueue = s1.reflected_per_queue.map((n, q) => n - (s0.reflected_per_queue[q] ?? 0));
    assert.equal(perQueue.length, 2);
    assert.ok(perQueue.every((n) => n > 100), `frames reflected on each queue pair: ${perQueue.join(', ')}`);
    await assertGuestUntouched(h, since, s0.carrier_changes);
  });
});

for (const server of [false, true]) {
  describe(`QEMU guest, ${server ? 'QEMU as the vhost-user server (server=on, the OpenStack layout)' : 'QEMU as the vhost-user client'}`, () => {
    let bed: Testbed;
    let h: GuestHost;
    before(async () => {
      bed = new Testbed(`guest-${server ? 'server' : 'client'}`);
      h = await bed.guestHost({ server });
    });
    after(async () => bed.cleanup());

    test('10 handoffs between generations: every reflected frame back once, no carrier change or kernel warning in the guest', async () => {
      const since = h.guest.events.length;
      const carrier = (await h.guest.stats()).carrier_changes;
      const probe = await bed.reflectProbe(h, PPS);
      await sleep(500);
      const marks = await handoffs(h, 10);
      await sleep(500);
      await assertNothingLost(h, probe, marks);
      await assertGuestUntouched(h, since, carrier);
    });

    if (!server) {
      test('after a driver reload and after a reboot (device resets inside the session) the standby is pre-loaded again and handoffs still lose nothing', async () => {
        await h.k.ctl.request(keeper.sessionPreload, { vm: h.vm, gen: 'B' });
        await h.guest.reload();
        await preloadedAgain(h, 'B');
        let probe = await bed.reflectProbe(h, PPS);
        await sleep(500);
        let marks = await handoffs(h, 4);
        await sleep(500);
        await assertNothingLost(h, probe, marks);

        await h.k.ctl.request(keeper.sessionPreload, { vm: h.vm, gen: 'B' });
        await h.guest.reboot();
        await preloadedAgain(h, 'B');
        const since = h.guest.events.length;
        const carrier = (await h.guest.stats()).carrier_changes;
        probe = await bed.reflectProbe(h, PPS);
        await sleep(500);
        marks = await handoffs(h, 4);
        await sleep(500);
        await assertNothingLost(h, probe, marks);
        await assertGuestUntouched(h, since, carrier);
      });

      test('kill -9 of the serving generation: the standby takes the guest over, which keeps its link and its traffic', async () => {
        const since = h.guest.events.length;
        const carrier = (await h.guest.stats()).carrier_changes;
        const probe = await bed.reflectProbe(h, PPS);
        await sleep(500);
        h.a.child.kill('SIGKILL');
        const deadline = Date.now() + 20000;
        while (!h.k.events.some((e) => e.event === 'failover/done' && e.data.vm === h.vm)) {
          assert.ok(Date.now() < deadline, `no failover of ${h.vm}: ${JSON.stringify(h.k.events)}`);
          await sleep(50);
        }
        const before = (await probe.ctl!.request(probeCtl.statsShow, {})).totals.received;
        await sleep(1000);
        const sum = await probe.stop();
        assert.ok(sum.totals.received - before > PPS / 2, `traffic through the guest after the failover: ${explainLoss(sum, probe.events, [])}`);
        await assertGuestUntouched(h, since, carrier);
      });
    }
  });
}
