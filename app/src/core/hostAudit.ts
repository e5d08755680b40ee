// The hosts' journals as the console audits them (DESIGN.md §15): each host's journal is the
// authoritative record of what was done there and who approved it. Its lines are fetched from
// the host's agent (journal/read), their hash chain verified (protocol/chain.ts), and checked
// against the head this console saw there last (kept in <state>/journal-heads.json), so lines
// cut off the end since are caught too. Exports as JSON or CSV (safe against formulas).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { agent } from '../../../protocol/agent.js';
import { verifyChain } from '../../../protocol/chain.js';
import type { HostAudit } from '../../../protocol/console.js';
import type { AgentLink } from './hostUpgrade.js';
import { csvTable } from './csv.js';

const sha256hex = (t: string) => createHash('sha256').update(t).digest('hex');
const Heads = z.record(z.string(), z.object({ seq: z.number().int(), hash: z.string(), at: z.string() }));

export interface HostJournal {
  audit: HostAudit;
  lines: string[];
}

export class HostJournals {
  private readonly file: string;

  constructor(stateDir: string) {
    this.file = join(stateDir, 'journal-heads.json');
  }

  private heads(): z.infer<typeof Heads> {
    if (!existsSync(this.file)) return {};
    const p = Heads.safeParse(JSON.parse(readFileSync(this.file, 'utf8')));
    if (!p.success) throw new Error(`${this.file}: not the heads this console keeps (${p.error.issues[0]?.message}); move it away to start over`);
    return p.data;
  }

  /** Fetch and verify host's journal through link (null: not connected, why says so). */
  async verify(host: string, link: AgentLink | null, why = 'not connected'): Promise<HostJournal> {
    const seen = this.heads()[host] ?? null;
    const empty: HostAudit = { host, entries: 0, unchained: 0, signed: 0, intact: false, head: null, seen, problem: null, approvers: false, error: null };
    if (!link) return { audit: { ...empty, error: why }, lines: [] };
    let r: z.output<typeof agent.journalRead.result>;
    try {
      r = await link.request(agent.journalRead, {});
    } catch (e) {
      return { audit: { ...empty, error: (e as Error).message }, lines: [] };
    }
    const v = verifyChain(r.lines, sha256hex, seen);
    const signed = v.objects.filter((o) => o.type === 'approval' && typeof o.signer === 'string').length;
    if (v.intact && v.head) {
      const heads = this.heads();
      heads[host] = { ...v.head, at: new Date().toISOString() };
      writeFileSync(`${this.file}.tmp`, `${JSON.stringify(heads, null, 2)}\n`);
      renameSync(`${this.file}.tmp`, this.file);
    }
    return { audit: { host, entries: v.entries, unchained: v.unchained, signed, intact: v.intact, head: v.head, seen, problem: v.problem, approvers: r.approvers, error: null }, lines: r.lines };
  }
}

/** The journals' lines with each host's verdict. */
export function exportJournals(js: HostJournal[], format: 'json' | 'csv'): string {
  const rows = js.flatMap((j) =>
    j.lines.map((text, i) => {
      let o: Record<string, unknown> = {};
      try {
        o = JSON.parse(text) as Record<string, unknown>;
      } catch {
        /* kept as text */
      }
      const by = (o.by ?? {}) as { user?: string; from?: string };
      return { host: j.audit.host, line: i + 1, seq: o.seq ?? null, t: o.t ?? null, type: o.type ?? null, user: by.user ?? null, from: by.from ?? null, signer: o.signer ?? null, fingerprint: o.fingerprint ?? null, hash: o.hash ?? null, broken_here: j.audit.problem?.line === i + 1, text };
    }),
  );
  if (format === 'json') return `${JSON.stringify({ hosts: js.map((j) => j.audit), lines: rows }, null, 2)}\n`;
  const cols = ['host', 'line', 'seq', 't', 'type', 'user', 'from', 'signer', 'fingerprint', 'hash', 'broken_here', 'text'] as const;
  return csvTable(cols, rows.map((r) => cols.map((c) => r[c])));
}
