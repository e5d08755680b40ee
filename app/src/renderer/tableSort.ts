// Sorting and filtering for the console's tables (fleet, audit ...). Pure: no DOM, so it is
// unit-tested with node:test. A table describes its columns once (how to sort, what text to
// match) and the screens only keep the sort state and the filter string.

export type SortValue = string | number | boolean | null | undefined;

export interface Column<T> {
  readonly key: string;
  /** the value the column sorts by; null/undefined always sort last, whatever the direction */
  readonly sortValue: (row: T) => SortValue;
  /** the text the filter box matches (defaults to the sort value as a string) */
  readonly filterText?: (row: T) => string;
}

export interface SortState {
  readonly key: string;
  readonly dir: 'asc' | 'desc';
}

const missing = (v: SortValue): v is null | undefined => v === null || v === undefined || (typeof v === 'number' && Number.isNaN(v));

const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

/** Compare two present values: numbers numerically, booleans false < true, the rest as text
 * with embedded numbers in numeric order ("h2" < "h10"). Mixed types compare as text. */
export function compareValues(a: Exclude<SortValue, null | undefined>, b: Exclude<SortValue, null | undefined>): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  return collator.compare(String(a), String(b));
}

/** Rows sorted by one column (stable); rows without a value come last in both directions. */
export function sortRows<T>(rows: readonly T[], columns: readonly Column<T>[], sort: SortState | null): T[] {
  const col = sort ? columns.find((c) => c.key === sort.key) : undefined;
  if (!sort || !col) return [...rows];
  const sign = sort.dir === 'asc' ? 1 : -1;
  return rows
    .map((row, i) => ({ row, i, v: col.sortValue(row) }))
    .sort((x, y) => {
      const xm = missing(x.v);
      const ym = missing(y.v);
      if (xm || ym) return xm === ym ? x.i - y.i : xm ? 1 : -1;
      return sign * compareValues(x.v as Exclude<SortValue, null | undefined>, y.v as Exclude<SortValue, null | undefined>) || x.i - y.i;
    })
    .map((x) => x.row);
}

/** Clicking a header: a new column sorts ascending, the same column flips direction. */
export function nextSort(current: SortState | null, key: string): SortState {
  if (current && current.key === key) return { key, dir: current.dir === 'asc' ? 'desc' : 'asc' };
  return { key, dir: 'asc' };
}

function cellText<T>(col: Column<T>, row: T): string {
  if (col.filterText) return col.filterText(row);
  const v = col.sortValue(row);
  return missing(v) ? '' : String(v);
}

/** Rows matching the filter box: every whitespace-separated term (case-insensitive) must occur
 * in some column's text, so "rack1 unreach" finds unreachable hosts of rack1. A term
 * "key:value" matches only the column with that key. */
export function filterRows<T>(rows: readonly T[], columns: readonly Column<T>[], query: string): T[] {
  const terms = query.toLowerCase().split(/\s+/).filter((t) => t.length > 0);
  if (terms.length === 0) return [...rows];
  const byKey = new Map(columns.map((c) => [c.key.toLowerCase(), c]));
  return rows.filter((row) =>
    terms.every((term) => {
      const colon = term.indexOf(':');
      if (colon > 0) {
        const col = byKey.get(term.slice(0, colon));
        if (col) return cellText(col, row).toLowerCase().includes(term.slice(colon + 1));
      }
      return columns.some((c) => cellText(c, row).toLowerCase().includes(term));
    }),
  );
}
