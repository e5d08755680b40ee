import assert from 'node:assert/strict';
import { test } from 'node:test';
import { stats } from './lib.js';

test('benchmark percentiles use nearest rank and never invent values; a benchmark with no samples fails, naming them', () => {
  const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 1..100, unsorted
  const s = stats(xs);
  assert.deepEqual([s.min, s.p50, s.p99, s.max, s.n], [1, 50, 99, 100, 100]);
  assert.equal(stats([7]).p99, 7);
  assert.throws(() => stats([], 'the handoffs'), /no samples of the handoffs/);
});
