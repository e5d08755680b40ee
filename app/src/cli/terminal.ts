// What the CLI shows and asks in a terminal: answers read line by line from stdin (a piped
// script of answers works as well as a person), the approval question for a move, progress lines
// for what the console core pushes, and tables.
import { openSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ReadStream, WriteStream } from 'node:tty';
import type { Approval, Campaign } from '../../../protocol/console.js';
import { round, type Measurement } from '../../../protocol/measure.js';

/** Lines typed (or piped) on stdin, read once and in order: a piped script of answers is
 * buffered, not lost when stdin ends before the question is asked. End of input = null. */
export function answers(): (prompt: string) => Promise<string | null> {
  const it = createInterface({ input: process.stdin, terminal: false })[Symbol.asyncIterator]();
  return async (prompt) => {
    process.stderr.write(prompt);
    const r = await it.next();
    return r.done ? null : String(r.value);
  };
}

/** The question for one approval, with what the operator needs to decide. */
export function question(a: Approval): string {
  const what = a.kind === 'wave' ? `wave "${a.wave_name}" (${a.moves.map((m) => `${m.host}: ${m.vms.length} VMs`).join(', ')})` : a.kind === 'host' ? `all ${a.moves[0]!.vms.length} VMs at once (stage swap)` : a.vm!;
  const where = a.kind === 'wave' ? '' : ` on ${a.host}`;
  const prev = a.previous ? ` (previous VM: break ${round(a.previous.break_ms, 2)} ms, lost ${a.previous.lost})` : '';
  const canary = a.canary ? ` (canary ${a.canary.host}: ${a.canary.vms} VMs, max break ${a.canary.max_gap_ms ?? '-'} ms, lost ${a.canary.lost})` : '';
  return `switch ${what}${where} to ${a.release}?${prev}${canary} [y/n/q/a, optionally followed by a reason] `;
}

export type Answer = { kind: 'approve' | 'deny'; reason: string } | { kind: 'stop' } | { kind: 'abort' };

/** y [reason] approves, n [reason] denies, q (or end of input) stops the campaign leaving every
 * host where it is, a aborts it (hosts not committed are moved back). Anything else: no. */
export function parseAnswer(line: string | null): Answer {
  if (line === null) return { kind: 'stop' };
  const m = /^\s*(\S*)\s*(.*)$/.exec(line)!;
  const word = m[1]!.toLowerCase();
  const reason = m[2]!.trim();
  if (/^q(uit)?$/.test(word)) return { kind: 'stop' };
  if (/^a(bort)?$/.test(word)) return { kind: 'abort' };
  if (/^y(es)?$/.test(word)) return { kind: 'approve', reason: reason || 'approved at the command line' };
  return { kind: 'deny', reason: reason || 'denied at the command line' };
}

export function measurementLine(host: string, m: Measurement): string {
  const w = m.witness;
  return (
    `${host} ${m.vm}: ${m.from} -> ${m.to}  break ${round(m.break_ms, 2)} ms (${m.break_basis})  lost ${m.lost} (${m.lost_basis})` +
    `  window ${round(m.window_us, 1)} us` +
    (m.passive_gap_us !== null ? `  datapath gap ${round(m.passive_gap_us / 1000, 2)} ms` : '') +
    (w ? `  delayed ${(w.rx?.delayed ?? 0) + (w.tx?.delayed ?? 0)}` : '') +
    (m.within_budget === false ? '  OVER BUDGET' : '')
  );
}

/** A line per host whose state changed since the last push. */
export function hostChanges(prev: Map<string, string>, c: Campaign): string[] {
  const out: string[] = [];
  for (const h of c.hosts) {
    const key = `${h.state}${h.error ? `: ${h.error}` : ''}`;
    if (prev.get(h.host) === key) continue;
    prev.set(h.host, key);
    out.push(`${h.host}: ${key}`);
  }
  return out;
}

export function table(rows: (string | number)[][]): string {
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  return rows.map((r) => r.map((v, c) => String(v).padEnd(w[c]!)).join('  ').trimEnd()).join('\n');
}

export const fmtUs = (us: number): string => (us >= 1000 ? `${round(us / 1000, 2)} ms` : `${round(us, 2)} us`);

/** A passphrase read from the controlling terminal with no echo (stdin may carry approvals);
 * null when there is no terminal or the operator presses Ctrl-C or Ctrl-D. */
export function ttyPassphrase(prompt: string): Promise<string | null> {
  let fd: number;
  try {
    fd = openSync('/dev/tty', 'r+');
  } catch {
    return Promise.resolve(null);
  }
  const input = new ReadStream(fd);
  const output = new WriteStream(fd);
  output.write(prompt);
  input.setRawMode(true);
  return new Promise((resolve) => {
    let text = '';
    const done = (v: string | null) => {
      input.setRawMode(false);
      input.removeAllListeners('data');
      input.destroy();
      output.write('\n');
      output.destroy();
      resolve(v);
    };
    input.on('data', (b: Buffer) => {
      for (const ch of b.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done(text);
        if (ch === '\u0003' || ch === '\u0004') return done(null);
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else text += ch;
      }
    });
  });
}
