// The renderer's one way to the console core: typed requests and pushes (api.ts) over either
// wire — Electron's preload bridge (window.hitless) or, in browser mode, a WebSocket to the
// local server (reconnecting with backoff). Every message is validated at this boundary:
// params before they leave, results and pushes when they arrive.
import type { z } from 'zod';
import { Envelope } from '../../../protocol/console.js';
import { describeZodError, type Notification, type Request } from '../../../protocol/rpc.js';

/** What Electron's preload exposes (contextBridge). */
export interface Bridge {
  send(msg: Envelope): void;
  onMessage(fn: (msg: Envelope) => void): void;
}

declare global {
  interface Window {
    hitless?: Bridge;
  }
}

export type LinkState = 'connecting' | 'open' | 'lost';
export type Transport = 'electron' | 'browser';

interface Wire {
  readonly transport: Transport;
  /** false when the message could not be handed to the wire (not connected) */
  send(msg: Envelope): boolean;
  start(onMessage: (raw: unknown) => void, onState: (s: LinkState) => void, onProblem: (msg: string) => void): void;
}

class BridgeWire implements Wire {
  readonly transport = 'electron' as const;
  constructor(private readonly bridge: Bridge) {}
  send(msg: Envelope): boolean {
    this.bridge.send(msg);
    return true;
  }
  start(onMessage: (raw: unknown) => void, onState: (s: LinkState) => void): void {
    this.bridge.onMessage(onMessage);
    onState('open');
  }
}

/** Browser mode: ws://<page host>/api?token=<the page's token>, one JSON envelope per frame. */
class SocketWire implements Wire {
  readonly transport = 'browser' as const;
  private ws: WebSocket | null = null;
  private delayMs = 250;
  constructor(private readonly url: string) {}

  send(msg: Envelope): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  start(onMessage: (raw: unknown) => void, onState: (s: LinkState) => void, onProblem: (msg: string) => void): void {
    const connect = () => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onopen = () => {
        this.delayMs = 250;
        onState('open');
      };
      ws.onmessage = (ev: MessageEvent) => {
        if (typeof ev.data !== 'string') return onProblem('console sent a binary frame; expected JSON text');
        let raw: unknown;
        try {
          raw = JSON.parse(ev.data);
        } catch {
          return onProblem('console sent a frame that is not JSON');
        }
        onMessage(raw);
      };
      ws.onclose = () => {
        if (this.ws !== ws) return;
        this.ws = null;
        onState('lost');
        setTimeout(connect, this.delayMs);
        this.delayMs = Math.min(this.delayMs * 2, 8000);
      };
    };
    connect();
  }
}

interface Pending {
  method: string;
  result: z.ZodTypeAny;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

interface PushSub {
  schema: z.ZodTypeAny;
  fns: Set<(params: never) => void>;
}

export class ConsoleClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly subs = new Map<string, PushSub>();
  private readonly stateFns = new Set<(s: LinkState) => void>();
  private readonly problemFns = new Set<(what: string, msg: string) => void>();
  private link: LinkState = 'connecting';

  constructor(private readonly wire: Wire) {
    wire.start(
      (raw) => this.receive(raw),
      (s) => this.setState(s),
      (msg) => this.problem('console', msg),
    );
  }

  get transport(): Transport {
    return this.wire.transport;
  }

  get state(): LinkState {
    return this.link;
  }

  /** Send one request; resolves with its validated result, rejects with Error(message). */
  call<P extends z.ZodTypeAny, R extends z.ZodTypeAny>(req: Request<P, R>, params: z.input<P>): Promise<z.output<R>> {
    const parsed = req.params.safeParse(params);
    if (!parsed.success) return Promise.reject(new Error(describeZodError(req.method, parsed.error)));
    const id = this.nextId++;
    return new Promise<z.output<R>>((resolve, reject) => {
      this.pending.set(id, { method: req.method, result: req.result, resolve: resolve as (v: unknown) => void, reject });
      if (!this.wire.send({ type: 'request', id, method: req.method, params: parsed.data })) {
        this.pending.delete(id);
        reject(new Error(`${req.method}: console connection lost, retrying`));
      }
    });
  }

  /** Subscribe to a push; returns the unsubscribe function. */
  on<P extends z.ZodTypeAny>(push: Notification<P>, fn: (params: z.output<P>) => void): () => void {
    let sub = this.subs.get(push.method);
    if (!sub) {
      sub = { schema: push.params, fns: new Set() };
      this.subs.set(push.method, sub);
    }
    const f = fn as (params: never) => void;
    sub.fns.add(f);
    return () => sub.fns.delete(f);
  }

  onState(fn: (s: LinkState) => void): () => void {
    this.stateFns.add(fn);
    return () => this.stateFns.delete(fn);
  }

  /** Messages that could not be used (bad frame, a push that fails its schema). */
  onProblem(fn: (what: string, msg: string) => void): () => void {
    this.problemFns.add(fn);
    return () => this.problemFns.delete(fn);
  }

  private setState(s: LinkState): void {
    this.link = s;
    if (s === 'lost') {
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new Error(`${p.method}: console connection lost before the answer came`));
      }
    }
    for (const fn of this.stateFns) fn(s);
  }

  private problem(what: string, msg: string): void {
    if (this.problemFns.size === 0) console.error(`${what}: ${msg}`);
    for (const fn of this.problemFns) fn(what, msg);
  }

  private receive(raw: unknown): void {
    const env = Envelope.safeParse(raw);
    if (!env.success) return this.problem('console', describeZodError('envelope', env.error));
    const msg = env.data;
    if (msg.type === 'result' || msg.type === 'error') {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.type === 'error') return p.reject(new Error(msg.message));
      const r = p.result.safeParse(msg.result);
      if (r.success) p.resolve(r.data);
      else p.reject(new Error(describeZodError(`${p.method} result`, r.error)));
      return;
    }
    if (msg.type === 'push') {
      const sub = this.subs.get(msg.method);
      if (!sub) return;
      const r = sub.schema.safeParse(msg.params);
      if (!r.success) return this.problem(msg.method, describeZodError(msg.method, r.error));
      for (const fn of sub.fns) fn(r.data as never);
    }
  }
}

function pickWire(): Wire {
  if (window.hitless) return new BridgeWire(window.hitless);
  const token = new URLSearchParams(location.search).get('token') ?? '';
  return new SocketWire(`ws://${location.host}/api?token=${encodeURIComponent(token)}`);
}

/** The renderer's client (one per window). */
export const client = new ConsoleClient(pickWire());
