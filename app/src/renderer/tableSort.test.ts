import assert from 'node:assert/strict';
import { test } from 'node:test';
import { filterRows, nextSort, sortRows, type Column } from './tableSort.js';

interface Host {
  name: string;
  group: string | null;
  conn: string;
  problem: string | null;
  lastBreakMs: number | null;
  vms: number;
}

const hosts: Host[] = [
  { name: 'h10', group: 'rack1', conn: 'connected', problem: null, lastBreakMs: 0.8, vms: 4 },
  { name: 'h2', group: 'rack2', conn: 'unreachable', problem: 'connect ETIMEDOUT 10.0.0.2:22', lastBreakMs: null, vms: 0 },
  { name: 'h1', group: 'rack1', conn: 'connected', problem: null, lastBreakMs: 12.5, vms: 4 },
  { name: 'h3', group: null, conn: 'hostkey-changed', problem: 'host key for h3 changed', lastBreakMs: 2, vms: 2 },
];

const columns: Column<Host>[] = [
  { key: 'name', sortValue: (h) => h.name },
  { key: 'group', sortValue: (h) => h.group },
  { key: 'conn', sortValue: (h) => h.conn, filterText: (h) => `${h.conn} ${h.problem ?? ''}` },
  { key: 'break', sortValue: (h) => h.lastBreakMs },
  { key: 'vms', sortValue: (h) => h.vms },
];

const names = (rows: Host[]) => rows.map((h) => h.name);

test('a numeric column sorts numerically (12.5 after 2), not as text', () => {
  assert.deepEqual(names(sortRows(hosts, columns, { key: 'break', dir: 'asc' })), ['h10', 'h3', 'h1', 'h2']);
});

test('rows without a value sort last in both directions', () => {
  assert.deepEqual(names(sortRows(hosts, columns, { key: 'break', dir: 'desc' })), ['h1', 'h3', 'h10', 'h2']);
  assert.deepEqual(names(sortRows(hosts, columns, { key: 'group', dir: 'asc' })).at(-1), 'h3');
  assert.deepEqual(names(sortRows(hosts, columns, { key: 'group', dir: 'desc' })).at(-1), 'h3');
});

test('names with numbers sort in natural order (h2 before h10)', () => {
  assert.deepEqual(names(sortRows(hosts, columns, { key: 'name', dir: 'asc' })), ['h1', 'h2', 'h3', 'h10']);
  assert.deepEqual(names(sortRows(hosts, columns, { key: 'name', dir: 'desc' })), ['h10', 'h3', 'h2', 'h1']);
});

test('sorting is stable: equal values keep their order', () => {
  assert.deepEqual(names(sortRows(hosts, columns, { key: 'vms', dir: 'asc' })), ['h2', 'h3', 'h10', 'h1']);
  assert.deepEqual(names(sortRows(hosts, columns, { key: 'vms', dir: 'desc' })), ['h10', 'h1', 'h3', 'h2']);
});

test('no sort or an unknown column leaves the order alone and does not mutate the input', () => {
  const copy = [...hosts];
  assert.deepEqual(names(sortRows(hosts, columns, null)), names(copy));
  assert.deepEqual(names(sortRows(hosts, columns, { key: 'nope', dir: 'asc' })), names(copy));
  sortRows(hosts, columns, { key: 'name', dir: 'asc' });
  assert.deepEqual(hosts, copy);
});

test('clicking a header sorts ascending, the same header again flips', () => {
  const a = nextSort(null, 'name');
  assert.deepEqual(a, { key: 'name', dir: 'asc' });
  const b = nextSort(a, 'name');
  assert.deepEqual(b, { key: 'name', dir: 'desc' });
  assert.deepEqual(nextSort(b, 'name'), { key: 'name', dir: 'asc' });
  assert.deepEqual(nextSort(b, 'vms'), { key: 'vms', dir: 'asc' });
});

test('the filter matches across columns, case-insensitively, including filterText', () => {
  assert.deepEqual(names(filterRows(hosts, columns, 'RACK1')), ['h10', 'h1']);
  // the problem text is only in the conn column's filterText
  assert.deepEqual(names(filterRows(hosts, columns, 'etimedout')), ['h2']);
  assert.deepEqual(names(filterRows(hosts, columns, '12.5')), ['h1']);
  assert.deepEqual(names(filterRows(hosts, columns, '')), names(hosts));
  assert.deepEqual(names(filterRows(hosts, columns, '   ')), names(hosts));
});

test('every term must match, each in any column', () => {
  assert.deepEqual(names(filterRows(hosts, columns, 'rack1 12.5')), ['h1']);
  assert.deepEqual(names(filterRows(hosts, columns, 'rack2 connected')), []);
  assert.deepEqual(names(filterRows(hosts, columns, 'rack2 unreach')), ['h2']);
});

test('column:value matches only that column', () => {
  // "h1" appears in the name of h1 and h10 and in no other column
  assert.deepEqual(names(filterRows(hosts, columns, 'name:h1')), ['h10', 'h1']);
  assert.deepEqual(names(filterRows(hosts, columns, 'conn:changed')), ['h3']);
  // "rack" is in group, not in conn
  assert.deepEqual(names(filterRows(hosts, columns, 'conn:rack')), []);
  // an unknown column name is treated as plain text
  assert.deepEqual(names(filterRows(hosts, columns, 'connect:')), []);
});
