// The host's upgrade journal: append-only JSON lines, each fsync'd before the agent acts on it,
// so an agent that dies at any point leaves a record from which the next one resumes or rolls
// back (upgrade.ts). It is also the host's audit record (DESIGN.md §15): every line names the
// SSH session that wrote it and is hash-chained onto the one before (protocol/chain.ts);
// approvals carry their signer. A torn last line (a crash mid-write: never acted on) is cut
// off when the journal is opened.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname } from 'node:path';
import { z } from 'zod';
import { ApprovalKind } from '../../../protocol/approval.js';
import { chainLine, GENESIS } from '../../../protocol/chain.js';
import { Budget, Measurement, UpgradeLoss } from '../../../protocol/measure.js';
import { UpgradeMode } from '../../../protocol/files.js';
import { SpanBaseline } from './witness.js';
import { KeeperUpgraded } from '../../../protocol/agent.js';

const Gen = { gen: z.string(), release: z.string() };
export const Entry = z.discriminatedUnion('type', [
  z.object({ type: z.literal('start'), ...Gen }),
  z.object({
    type: z.literal('prepare'),
    ...Gen,
    approve: z.union([z.literal('each'), z.object({ auto: Budget })]),
    mode: UpgradeMode.default('handoff'),
    /** what each switch of this upgrade is judged against (null: nothing was given) */
    budget: Budget.nullable().default(null),
    /** the console's campaign it belongs to (null: none was named) */
    campaign: z.string().nullable().default(null),
  }),
  z.object({ type: z.literal('prepared') }),
  // the target could not be started (it was stopped again): the host stays on its active one
  z.object({ type: z.literal('prepare-failed'), error: z.string() }),
  z.object({ type: z.literal('switch'), vm: z.string(), to: z.string() }),
  z.object({ type: z.literal('switched'), vm: z.string(), to: z.string(), measurement: Measurement.nullable() }),
  z.object({ type: z.literal('switch-failed'), vm: z.string(), to: z.string(), error: z.string() }),
  // swap mode: the active generation's stage replaced (to: target) or put back (to: active)
  z.object({ type: z.literal('swap'), to: z.enum(['target', 'active']) }),
  z.object({ type: z.literal('swapped'), to: z.enum(['target', 'active']), measurements: z.array(Measurement).nullable() }),
  z.object({ type: z.literal('swap-failed'), to: z.enum(['target', 'active']), error: z.string() }),
  z.object({ type: z.literal('commit') }),
  z.object({ type: z.literal('committed') }),
  z.object({ type: z.literal('abort'), outcome: z.enum(['rolled-back', 'aborted']) }),
  z.object({ type: z.literal('aborted'), outcome: z.enum(['rolled-back', 'aborted']) }),
  z.object({ type: z.literal('failed'), error: z.string() }),
  // the witness's counts as an upgrade starts (before its prepare): whichever agent ends the
  // upgrade counts what the VMs lost over all of it from here
  z.object({ type: z.literal('span'), vms: z.array(z.string()), baseline: SpanBaseline }),
  // what the VMs lost over the upgrade that just ended, switch windows or not (the witness's count)
  z.object({ type: z.literal('loss'), loss: UpgradeLoss }),
  // a generation died: where the keeper left each VM (serving null: its frontend was let go,
  // no generation could take it), and the frames that were inside the dead process
  z.object({
    type: z.literal('gen-dead'),
    gen: z.string(),
    cause: z.string(),
    sessions: z.array(z.object({ vm: z.string(), serving: z.string().nullable() })),
    /** what the death did: the sessions the keeper moved, and the VMs it had to let go */
    moved: z.array(z.object({ vm: z.string(), to: z.string() })),
    down: z.array(z.string()),
    lost_inside: z.number().int().nullable(),
  }),
  // a replacement generation of the dead one's release, started to be the standby again
  z.object({ type: z.literal('restore'), gen: z.string(), release: z.string(), replaces: z.string() }),
  z.object({
    type: z.literal('restored'),
    gen: z.string(),
    replaces: z.string(),
    /** from the death to the replacement ready as standby */
    took_ms: z.number(),
    /** from the death to every VM's frontend connected again (null: none was down, or one stayed down) */
    outage_ms: z.number().nullable(),
  }),
  z.object({ type: z.literal('restore-failed'), replaces: z.string(), error: z.string() }),
  // the keeper died (or came back empty: systemd restarted it) while generations run: its
  // sessions went with it, and the frontends saw their links go down
  z.object({ type: z.literal('keeper-lost'), cause: z.string() }),
  // a keeper running again with the generations attached and every VM added back; down: the
  // VMs whose frontends had not connected again when the agent stopped waiting
  // the keeper replaced under its sessions by the installed binary (keeperUpgrade.ts); pause_us
  // null: recovered after the agent stopped during it
  z.object({ type: z.literal('keeper-upgrade'), from_pid: z.number().int(), from_version: z.string(), to_version: z.string(), binary: z.string() }),
  z.object({ type: z.literal('keeper-upgraded'), ...KeeperUpgraded.shape, recovered: z.boolean() }),
  z.object({ type: z.literal('keeper-upgrade-failed'), error: z.string() }),
  z.object({ type: z.literal('keeper-restored'), pid: z.number().int().nullable(), took_ms: z.number(), outage_ms: z.number().nullable(), down: z.array(z.string()) }),
  // a VM found on an OVS-DPDK host (discover.ts): its port in the active generation's DB, now
  // behind the keeper; one of the host's VMs from here on, like those its config lists
  z.object({ type: z.literal('vm-found'), vm: z.string(), mac: z.string(), frontend_socket: z.string().optional(), gen: z.string() }),
  // a found VM's port left the active generation's DB (the VM was deleted or moved away), or
  // it could not be put behind the keeper: why says which
  z.object({ type: z.literal('vm-gone'), vm: z.string(), why: z.string() }),
  // an approval or denial the agent verified against the host's approvers file (approvers.ts),
  // before acting on it: who signed it, and the signed text itself (anyone can verify it again)
  z.object({
    type: z.literal('approval'),
    decision: z.enum(['approve', 'deny']),
    kind: ApprovalKind,
    vms: z.array(z.string()),
    signer: z.string(),
    fingerprint: z.string(),
    payload: z.string(),
    signature: z.string(),
  }),
]);
export type Entry = z.infer<typeof Entry>;
/** An entry as appended (defaults filled in by the schema). */
export type NewEntry = z.input<typeof Entry>;
/** The SSH session an agent serves (the user it logged in as, and from where). */
export const Actor = z.object({ user: z.string(), from: z.string().nullable() });
export type Actor = z.infer<typeof Actor>;

/** This agent's session, as sshd (and sudo, which keeps SSH_CONNECTION by the package's rule)
 * hands it over: the user who logged in, and the client's address and port. */
export function sessionActor(env: NodeJS.ProcessEnv = process.env): Actor {
  const c = env.SSH_CONNECTION?.split(' ') ?? env.SSH_CLIENT?.split(' ');
  return { user: env.SUDO_USER ?? env.USER ?? env.LOGNAME ?? userInfo().username, from: c && c.length >= 2 ? `${c[0]} port ${c[1]}` : null };
}
export type Stamped = Entry & { seq: number; t: string; by?: Actor };

export const sha256hex = (text: string) => createHash('sha256').update(text).digest('hex');

export class Journal {
  private readonly fd: number;
  private all: Stamped[] = [];
  /** bytes of the file read into all: another agent of the host may have appended since */
  private bytes = -1;

  /** the hash of the last line (GENESIS: none chained yet) */
  private head = GENESIS;

  /** actor: the session on whose behalf this agent writes (null: not known) */
  constructor(
    readonly path: string,
    private readonly actor: Actor | null = null,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, 'a+');
    this.cutTornTail();
    this.sync();
  }

  /** A last line without its newline was never acted on (append fsyncs before the agent acts):
   * cut it off, so the next line starts on a line of its own. */
  private cutTornTail(): void {
    const text = readFileSync(this.path, 'utf8');
    if (text === '' || text.endsWith('\n')) return;
    const keep = Buffer.byteLength(text.slice(0, text.lastIndexOf('\n') + 1));
    console.error(`hitless-agent: ${this.path}: cut a torn last line (${Buffer.byteLength(text) - keep} bytes) left by a crash mid-write`);
    ftruncateSync(this.fd, keep);
    fsyncSync(this.fd);
  }

  /** The journal's lines as written (what an auditor verifies). */
  lines(): string[] {
    return readFileSync(this.path, 'utf8').split('\n').filter((l) => l.trim() !== '');
  }

  static read(path: string): Stamped[] {
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return [];
    }
    return Journal.parse(text);
  }

  private static parse(text: string): Stamped[] {
    const out: Stamped[] = [];
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        const o = JSON.parse(line) as { seq?: unknown; t?: unknown; by?: unknown };
        const e = Entry.safeParse(o);
        const by = Actor.safeParse(o.by);
        if (e.success && typeof o.seq === 'number' && typeof o.t === 'string') out.push({ ...e.data, seq: o.seq, t: o.t, ...(by.success ? { by: by.data } : {}) });
      } catch {
        /* a torn line from a crash mid-write */
      }
    }
    return out;
  }

  /** Read the file again when it changed (one fstat when it did not). */
  private sync(): void {
    const size = fstatSync(this.fd).size;
    if (size === this.bytes) return;
    const text = readFileSync(this.path, 'utf8');
    this.all = Journal.parse(text);
    this.bytes = Buffer.byteLength(text);
    const last = text.trimEnd().split('\n').at(-1) ?? '';
    this.head = /"hash":"([0-9a-f]{64})"\}$/.exec(last)?.[1] ?? GENESIS;
  }

  entries(): readonly Stamped[] {
    this.sync();
    return this.all;
  }

  get seq(): number {
    this.sync();
    return this.all.length === 0 ? 0 : this.all[this.all.length - 1]!.seq;
  }

  /** Durable before it returns: the caller acts only afterwards. Appends are made under the
   * host's lock (hostLock.ts), so no other agent appends between the read and the write. */
  append(e: NewEntry): Stamped {
    const s: Stamped = { ...Entry.parse(e), seq: this.seq + 1, t: new Date().toISOString(), ...(this.actor ? { by: this.actor } : {}) };
    const { line, hash } = chainLine(s, this.head, sha256hex);
    writeSync(this.fd, `${line}\n`);
    fsyncSync(this.fd);
    this.all.push(s);
    this.bytes += Buffer.byteLength(line) + 1;
    this.head = hash;
    return s;
  }

  close(): void {
    closeSync(this.fd);
  }
}
