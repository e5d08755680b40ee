// A connection to an OVS daemon's unixctl socket, as ovs-appctl makes one: JSON-RPC 1.0
// requests and replies, one JSON object after another with nothing between them. For the
// commands a switch sends inside a VM's break (revalidator/purge), where spawning ovs-appctl
// would cost 20-100 ms each.
import { createConnection, type Socket } from 'node:net';
import { z } from 'zod';

const ReplySchema = z.object({ id: z.number(), result: z.unknown(), error: z.unknown() });

/** Where the first complete JSON object in s ends (index after its closing brace), or -1. */
export function objectEnd(s: string): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i + 1;
  }
  return -1;
}

export class Unixctl {
  private buf = '';
  private id = 0;
  private readonly pending = new Map<number, { resolve: (s: string) => void; reject: (e: Error) => void }>();
  private gone: Error | null = null;

  private constructor(
    private readonly sock: Socket,
    readonly path: string,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('error', (e) => this.fail(new Error(`unixctl ${path}: ${e.message}`)));
    sock.on('close', () => this.fail(new Error(`unixctl ${path} closed`)));
  }

  static connect(path: string, timeoutMs = 5000): Promise<Unixctl> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path);
      const timer = setTimeout(() => (s.destroy(), reject(new Error(`unixctl ${path}: no connection after ${timeoutMs} ms`))), timeoutMs);
      s.once('connect', () => (clearTimeout(timer), resolve(new Unixctl(s, path))));
      s.once('error', (e) => (clearTimeout(timer), reject(new Error(`unixctl ${path}: ${e.message}`))));
    });
  }

  /** One command; resolves with its text reply, rejects with the daemon's error text. */
  call(method: string, params: string[] = [], timeoutMs = 10000): Promise<string> {
    if (this.gone) return Promise.reject(this.gone);
    const id = this.id++;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => (this.pending.delete(id), reject(new Error(`unixctl ${this.path}: ${method}: no reply after ${timeoutMs} ms`))), timeoutMs);
      this.pending.set(id, { resolve: (s) => (clearTimeout(timer), resolve(s)), reject: (e) => (clearTimeout(timer), reject(e)) });
      this.sock.write(JSON.stringify({ method, params, id }));
    });
  }

  /** The connection is gone (closed, or the daemon went). */
  get closed(): boolean {
    return this.gone !== null;
  }

  /** Kept open without keeping the process alive (a connection kept between uses). */
  unref(): this {
    this.sock.unref();
    return this;
  }

  close(): void {
    this.sock.destroy();
    this.fail(new Error(`unixctl ${this.path} closed`));
  }

  private onData(d: string): void {
    this.buf += d;
    for (let end = objectEnd(this.buf); end > 0; end = objectEnd(this.buf)) {
      const text = this.buf.slice(0, end);
      this.buf = this.buf.slice(end);
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
      const r = ReplySchema.safeParse(json);
      if (!r.success) return this.fail(new Error(`unixctl ${this.path}: not a JSON-RPC reply: ${text.slice(0, 200)}`));
      const p = this.pending.get(r.data.id);
      this.pending.delete(r.data.id);
      if (r.data.error !== null && r.data.error !== undefined) p?.reject(new Error(`unixctl ${this.path}: ${String(r.data.error).trim()}`));
      else p?.resolve(typeof r.data.result === 'string' ? r.data.result : '');
    }
  }

  private fail(e: Error): void {
    if (this.gone) return;
    this.gone = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}
