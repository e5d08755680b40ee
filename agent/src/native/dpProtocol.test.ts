import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VmStats } from '../../../protocol/native/dp.js';

test('dp stats: an older release without first-frame stamps still parses (a mixed-release host stays measurable)', () => {
  const old = { connected: true, rx_pkts: 5, rx_bytes: 320, tx_pkts: 4, tx_bytes: 256, tx_retries: 0, drops: { ring_full: 0, no_dest: 1, not_ready: 0, stalled: 0 }, last_rx_ns: 9, last_tx_ns: 8, pending: 0 };
  const s = VmStats.parse(old);
  assert.equal(s.first_rx_ns, 0);
  assert.equal(s.first_tx_ns, 0);
  assert.throws(() => VmStats.parse({ ...old, rx_pkts: undefined }), /rx_pkts/);
});
