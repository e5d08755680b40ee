// CSV as the console exports it (reports, audit logs): every cell quoted; a text a spreadsheet
// would run as a formula (= + - @ tab CR first) is prefixed with ' so it stays text. Numbers are
// written as they are.

export function csvCell(v: unknown): string {
  let s = String(v ?? '');
  if (typeof v !== 'number' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return `"${s.replace(/"/g, '""')}"`;
}

/** A header row and rows, one line each. */
export function csvTable(header: readonly string[], rows: readonly (readonly unknown[])[]): string {
  return [header, ...rows].map((r) => r.map(csvCell).join(',')).join('\n') + '\n';
}
