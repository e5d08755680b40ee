// The hash chain of a host's journal (DESIGN.md §15): each line is a JSON object whose "prev"
// is the hash of the line before (GENESIS for the first) and whose last member, "hash", is the
// SHA-256 of the line's own text without that member. The hash covers the bytes as written, so
// nothing needs re-serialising to check it: an edited line fails its hash, a removed or
// reordered one breaks the next line's prev, and a cut tail is caught against a head seen
// before. Pure: the SHA-256 function is the caller's (node:crypto on both ends).

export const GENESIS = '0'.repeat(64);
export type Sha256Hex = (text: string) => string;

/** The line for obj chained onto prev (no newline). */
export function chainLine(obj: Record<string, unknown>, prev: string, sha256: Sha256Hex): { line: string; hash: string } {
  const { prev: _p, hash: _h, ...rest } = obj;
  const body = JSON.stringify({ ...rest, prev });
  const hash = sha256(body);
  return { line: `${body.slice(0, -1)},"hash":"${hash}"}`, hash };
}

const HASHED = /^(\{.*),"hash":"([0-9a-f]{64})"\}$/;

/** A head an earlier reader saw: the journal must still hold it. */
export interface Head {
  seq: number;
  hash: string;
}

export interface ChainVerdict {
  /** lines read (entries) */
  entries: number;
  /** lines before the chain began (written by an agent that did not chain them) */
  unchained: number;
  intact: boolean;
  /** the last chained line */
  head: Head | null;
  /** the first thing wrong: its line (1-based), seq when it has one, its text, and why */
  problem: { line: number; seq: number | null; text: string; why: string } | null;
  /** every line that parsed, in order */
  objects: Record<string, unknown>[];
}

/** Check the lines of a journal (as read, newline-split, empty lines dropped). */
export function verifyChain(lines: readonly string[], sha256: Sha256Hex, seen: Head | null = null): ChainVerdict {
  const objects: Record<string, unknown>[] = [];
  let prev: string | null = null;
  let head: Head | null = null;
  let unchained = 0;
  let problem: ChainVerdict['problem'] = null;
  const bad = (i: number, seq: number | null, why: string) => (problem ??= { line: i + 1, seq, text: lines[i]!.slice(0, 500), why });
  const seqOf = (o: Record<string, unknown>) => (typeof o.seq === 'number' ? o.seq : null);
  let seenFound = false;
  for (let i = 0; i < lines.length; i++) {
    let o: Record<string, unknown>;
    try {
      const v: unknown = JSON.parse(lines[i]!);
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
      o = v as Record<string, unknown>;
    } catch {
      bad(i, null, 'not a JSON object');
      continue;
    }
    objects.push(o);
    const m = HASHED.exec(lines[i]!);
    if (!m) {
      if (prev === null) unchained++;
      else bad(i, seqOf(o), 'no hash: a line added without the chain');
      continue;
    }
    const expectPrev = prev ?? GENESIS;
    if (sha256(`${m[1]}}`) !== m[2]) bad(i, seqOf(o), 'its hash does not match its text: the line was edited');
    else if (o.prev !== expectPrev) bad(i, seqOf(o), prev === null ? 'the chain does not start at the beginning: lines before it were removed' : 'its prev is not the hash of the line before: a line was removed or reordered');
    prev = m[2]!;
    const seq = seqOf(o);
    if (seq !== null) {
      if (head && seq !== head.seq + 1) bad(i, seq, `seq ${seq} follows ${head.seq}: lines are missing`);
      head = { seq, hash: prev };
      if (seen && seq === seen.seq) {
        seenFound = true;
        if (prev !== seen.hash) bad(i, seq, `seq ${seq} is not the line seen before (hash ${seen.hash.slice(0, 12)}…): the journal was rewritten`);
      }
    }
  }
  if (seen && !seenFound && !problem) {
    const last = head?.seq ?? 0;
    problem = { line: lines.length, seq: last, text: '', why: seen.seq > last ? `the journal ends at seq ${last}, but seq ${seen.seq} was seen before: its tail was cut` : `seq ${seen.seq}, seen before, is not in the journal` };
  }
  return { entries: lines.length, unchained, intact: problem === null, head, problem, objects };
}
