// Client for the native processes' control sockets (hitless-dp, hitless-keeper,
// hitless-probe): one JSON object per line over a Unix stream socket (DESIGN.md §5). Commands
// are the typed requests defined once in protocol/native/ (method = the command's name);
// arguments are checked before they are sent and results when they arrive.
import { createConnection, type Socket } from 'node:net';
import { z } from 'zod';
import { ctl } from '../../../protocol/native/ctl.js';
import type { Request } from '../../../protocol/rpc.js';

const ReplySchema = z.union([
  z.object({ id: z.union([z.number(), z.string(), z.null()]).optional(), ok: z.literal(true), result: z.unknown() }),
  z.object({
    id: z.union([z.number(), z.string(), z.null()]).optional(),
    ok: z.literal(false),
    error: z.object({ code: z.string(), message: z.string() }),
  }),
]);
export type CtlReply = z.infer<typeof ReplySchema>;

const EventSchema = z.object({ event: z.string(), data: z.unknown() });
export type CtlEvent = z.infer<typeof EventSchema>;

/** A command the process refused: `code` is its machine-readable reason. */
export class CtlError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly cmd: string,
  ) {
    super(`${cmd}: ${message} (${code})`);
    this.name = 'CtlError';
  }
}

interface Pending {
  resolve: (r: CtlReply) => void;
  reject: (e: Error) => void;
}

export class CtlClient {
  private buf = '';
  private nextId = 1;
  // The server answers requests of one connection in order, including lines it could not
  // parse (those replies carry id null), so replies are matched first-in first-out.
  private readonly pending: Pending[] = [];
  private readonly listeners = new Set<(e: CtlEvent) => void>();
  private closed: Error | null = null;
  private markEnded!: (e: Error) => void;
  /** Resolves (with the reason) once the connection is gone. */
  readonly ended = new Promise<Error>((r) => (this.markEnded = r));

  private constructor(private readonly sock: Socket, readonly path: string) {
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.onData(chunk));
    sock.on('error', (e) => this.fail(new Error(`control socket ${path}: ${e.message}`)));
    sock.on('close', () => this.fail(new Error(`control socket ${path} closed`)));
  }

  static connect(path: string, timeoutMs = 5000): Promise<CtlClient> {
    return new Promise((resolve, reject) => {
      const sock = createConnection(path);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`control socket ${path}: no connection after ${timeoutMs} ms`));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        resolve(new CtlClient(sock, path));
      });
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  /** Send a typed command; resolves with its checked result or rejects with CtlError. */
  async request<A extends z.ZodTypeAny, R extends z.ZodTypeAny>(c: Request<A, R>, args: z.input<A>): Promise<z.output<R>> {
    const parsedArgs = c.params.parse(args);
    const reply = await this.send(JSON.stringify({ id: this.nextId++, cmd: c.method, args: parsedArgs }));
    if (!reply.ok) throw new CtlError(reply.error.code, reply.error.message, c.method);
    return c.result.parse(reply.result);
  }

  /** Send one raw line (tests of bad input use this) and return the reply as it came. */
  sendRaw(line: string): Promise<CtlReply> {
    return this.send(line);
  }

  /** Ask for events; listeners get every {event,data} the process emits from now on. */
  async subscribe(listener: (e: CtlEvent) => void): Promise<void> {
    this.listeners.add(listener);
    await this.request(ctl.eventsSubscribe, {});
  }

  /** Kept open without keeping the process alive (a connection kept between uses). */
  unref(): this {
    this.sock.unref();
    return this;
  }

  close(): void {
    this.sock.destroy();
  }

  /** The connection is gone (closed, or the server went). */
  isClosed(): boolean {
    return this.closed !== null;
  }

  private send(line: string): Promise<CtlReply> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.sock.write(line.endsWith('\n') ? line : `${line}\n`);
    });
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (line.trim() === '') continue;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        this.fail(new Error(`control socket ${this.path}: unparseable line from server: ${line.slice(0, 200)}`));
        return;
      }
      const ev = EventSchema.safeParse(msg);
      if (ev.success) {
        for (const l of this.listeners) l(ev.data);
        continue;
      }
      const reply = ReplySchema.safeParse(msg);
      const p = this.pending.shift();
      if (!p) continue;
      if (reply.success) p.resolve(reply.data);
      else p.reject(new Error(`control socket ${this.path}: malformed reply: ${line.slice(0, 200)}`));
    }
  }

  private fail(e: Error): void {
    if (this.closed) return;
    this.closed = e;
    this.markEnded(e);
    for (const p of this.pending.splice(0)) p.reject(e);
  }
}
