// The audit log: every operator action and approval, append-only, one JSON line each, fsync'd,
// and hash-chained — each entry's hash covers its content and the previous entry's hash, so an
// edited, removed or reordered line breaks the chain at that line and `verify` says where.
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { AuditEntry } from '../../../protocol/console.js';
import { csvTable } from './csv.js';

export const GENESIS = '0'.repeat(64);

function digest(prev: string, e: Omit<AuditEntry, 'hash' | 'prev'>): string {
  return createHash('sha256')
    .update(prev)
    .update(JSON.stringify([e.seq, e.at, e.actor, e.action, e.detail]))
    .digest('hex');
}

export interface Verdict {
  ok: boolean;
  entries: number;
  broken_at: number | null;
  reason: string | null;
}

export class AuditLog {
  private entries: AuditEntry[] = [];

  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
    const v = this.verify();
    if (!v.ok) console.error(`hitless-console: audit log ${path} does not verify (${v.reason}); new entries chain onto its last line`);
  }

  /** Lines as written; a line that is not a valid entry is kept as null (verify reports it). */
  private read(): (AuditEntry | null)[] {
    let text = '';
    try {
      text = readFileSync(this.path, 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => {
        try {
          const p = AuditEntry.safeParse(JSON.parse(l));
          return p.success ? p.data : null;
        } catch {
          return null;
        }
      });
  }

  append(actor: string, action: string, detail: Record<string, unknown>): AuditEntry {
    const last = this.entries.at(-1);
    const base = { seq: (last?.seq ?? 0) + 1, at: new Date().toISOString(), actor, action, detail };
    const prev = last?.hash ?? GENESIS;
    const e: AuditEntry = { ...base, prev, hash: digest(prev, base) };
    const fd = openSync(this.path, 'a');
    try {
      writeSync(fd, `${JSON.stringify(e)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.entries.push(e);
    return e;
  }

  list(limit: number): AuditEntry[] {
    return this.entries.slice(-limit);
  }

  /** Re-read the file and check every link of the chain. */
  verify(): Verdict {
    const lines = this.read();
    let prev = GENESIS;
    const good: AuditEntry[] = [];
    for (let i = 0; i < lines.length; i++) {
      const e = lines[i];
      const seq = i + 1;
      const broken = (reason: string): Verdict => {
        this.entries = lines.filter((x): x is AuditEntry => x !== null);
        return { ok: false, entries: lines.length, broken_at: seq, reason };
      };
      if (!e) return broken(`line ${seq} is not an audit entry`);
      if (e.seq !== seq) return broken(`line ${seq} carries seq ${e.seq}: an entry was removed or reordered`);
      if (e.prev !== prev) return broken(`entry ${seq} does not follow entry ${seq - 1}'s hash`);
      if (digest(prev, e) !== e.hash) return broken(`entry ${seq}'s content does not match its hash: it was edited`);
      prev = e.hash;
      good.push(e);
    }
    this.entries = good;
    return { ok: true, entries: lines.length, broken_at: null, reason: null };
  }

  exportJson(): string {
    return `${JSON.stringify(this.read(), null, 2)}\n`;
  }

  exportCsv(): string {
    const rows = this.read().map((e) => (e ? [e.seq, e.at, e.actor, e.action, JSON.stringify(e.detail), e.prev, e.hash] : ['?', '', '', 'unreadable line', '', '', '']));
    return csvTable(['seq', 'at', 'actor', 'action', 'detail', 'prev', 'hash'], rows);
  }
}
