import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ProbeEvent } from './probeProtocol.js';
import { attribute } from './breaktime.js';

const gap = (src: string, rx: string, start: number, us: number): ProbeEvent => ({
  event: 'gap',
  data: { flow: `${src}:${rx}`, src, rx_vm: rx, start_ns: start, end_ns: start + us * 1000, gap_us: us, lost_in_gap: 0 },
});

test('gaps are charged to the handoff of their VM, the rest is background', () => {
  const events = [gap('v1', 'v2', 10e6, 800), gap('v3', 'v4', 50e6, 3000), gap('v2', 'v1', 100e6, 1200)];
  const a = attribute(events, [{ vm: 'v1', start_ns: 10.2e6, end_ns: 10.5e6 }, { vm: 'v2', start_ns: 200e6, end_ns: 200.3e6 }], 500);
  assert.deepEqual(a.event_gap_ms, [0.8, 0.5]);
  assert.equal(a.below_threshold, 1);
  assert.deepEqual(a.background_gap_ms.sort(), [1.2, 3]);
});
