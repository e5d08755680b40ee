// Numbers with their units, the way every screen shows them. Pure: no DOM.

const dash = '—';

/** Break times: 0.42 ms, 12.3 ms, 250 ms. */
export function fmtMs(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return dash;
  const a = Math.abs(v);
  return `${a < 10 ? v.toFixed(2) : a < 100 ? v.toFixed(1) : v.toFixed(0)} ms`;
}

/** A limit as typed (5 ms, 0.5 ms), without the fixed decimals of measured values. */
export function fmtLimitMs(v: number): string {
  return `${+v.toFixed(3)} ms`;
}

export function fmtUs(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return dash;
  return v < 10 ? `${v.toFixed(2)} µs` : `${Math.round(v).toLocaleString('en-US')} µs`;
}

export function fmtPps(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return dash;
  return `${Math.round(v).toLocaleString('en-US')} pps`;
}

export function fmtFrames(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return dash;
  return `${v.toLocaleString('en-US')} ${v === 1 ? 'frame' : 'frames'}`;
}

/** An ISO time as local HH:MM:SS (the full stamp goes in a title). */
export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return dash;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleTimeString('en-GB', { hour12: false });
}

export function fmtDateTime(iso: string | null | undefined): string {
  if (!iso) return dash;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function orDash(v: string | number | null | undefined): string {
  return v === null || v === undefined || v === '' ? dash : String(v);
}

/** "1.2.10" > "1.2.9": release versions newest first. */
export function compareVersionsDesc(a: string, b: string): number {
  const pa = a.split(/[.-]/);
  const pb = b.split(/[.-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    // same numbers but one has a pre-release tail: the plain release is the newer
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = Number(x);
    const ny = Number(y);
    const c = Number.isNaN(nx) || Number.isNaN(ny) ? x.localeCompare(y) : nx - ny;
    if (c !== 0) return -c;
  }
  return 0;
}

/** Releases every given host has installed (the targets a campaign over them can use). */
export function commonReleases(lists: readonly (readonly string[])[]): string[] {
  const [first, ...rest] = lists;
  if (!first) return [];
  return first.filter((r) => rest.every((l) => l.includes(r))).sort(compareVersionsDesc);
}

/** A break in us, as an operator reads it. */
export function fmtBreak(us: number | null): string {
  if (us === null) return '—';
  return us >= 1000 ? `~${(us / 1000).toFixed(2)} ms` : `~${us < 10 ? us.toFixed(1) : Math.round(us)} µs`;
}
