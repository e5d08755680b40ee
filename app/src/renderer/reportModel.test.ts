import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Campaign } from '../../../protocol/console.js';
import { figures, type Measurement } from '../../../protocol/measure.js';
import { commonReleases } from './format.js';
import { campaignProgress } from './reportModel.js';

const m = (vm: string, gap_ms: number, dropped = 0): Measurement => {
  const parts = { vm, mode: 'handoff' as const, from: '1.0.0', to: '1.1.0', t_ns: 1, window_us: 300, phases_us: null, passive_gap_us: 500, rings: [], anomalies: [], dropped, witness: null };
  return { ...parts, ...figures({ ...parts, passive_gap_us: gap_ms * 1000 }, { max_gap_ms: 5, max_lost: 0 }) };
};

const campaign: Campaign = {
  id: 'c1',
  plan: {
    spec: { hosts: ['h1', 'h2'], release: '1.1.0', canary: 'h1', batch: 1, approval: 'each-vm', budget: { max_gap_ms: 5, max_lost: 0 }, mode: 'handoff', host_modes: {} },
    waves: [{ index: 0, name: 'canary', hosts: [] }, { index: 1, name: 'wave 1', hosts: [] }],
    blockers: [],
    notes: [],
  },
  state: 'running',
  wave: 1,
  waves_paused: [],
  hosts: [
    {
      host: 'h1', wave: 0, state: 'committed', paused: false, from: '1.0.0', to: '1.1.0', mode: 'handoff', error: null, keeper: null,
      loss: null,
      vms: [
        { vm: 'a', state: 'moved', measurement: m('a', 1), decision: { decision: 'approve', reason: 'canary ok', by: 'ann', at: '2025-01-01T00:00:00Z' } },
        { vm: 'b', state: 'moved', measurement: m('b', 9, 2), decision: null },
      ],
    },
    {
      host: 'h2', wave: 1, state: 'switching', paused: false, from: '1.0.0', to: '1.1.0', mode: 'handoff', error: null, keeper: null,
      loss: null,
      vms: [
        { vm: 'c', state: 'denied', measurement: null, decision: { decision: 'deny', reason: 'b was over budget', by: 'ann', at: '2025-01-01T00:01:00Z' } },
        { vm: 'd', state: 'awaiting-approval', measurement: null, decision: null },
      ],
    },
  ],
  started: '2025-01-01T00:00:00Z',
  finished: null,
  error: null,
  rollbacks: [],
  decisions: [],
};

test('progress counts VMs in final states as done', () => {
  assert.deepEqual(campaignProgress(campaign), { total: 4, moved: 2, denied: 1, failed: 0, rolledBack: 0, active: 1, done: 3 });
});

test('releases common to the chosen hosts, newest first', () => {
  assert.deepEqual(commonReleases([['1.0.0', '1.1.0', '1.10.0'], ['1.10.0', '1.1.0']]), ['1.10.0', '1.1.0']);
  assert.deepEqual(commonReleases([['1.1.0-rc1', '1.1.0', '1.0.0']]), ['1.1.0', '1.1.0-rc1', '1.0.0']);
  assert.deepEqual(commonReleases([]), []);
});
