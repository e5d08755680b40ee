// Browser mode: the console core served to a browser on this machine only. One HTTP server on
// 127.0.0.1 serves the built renderer and, on /api, a WebSocket carrying the same envelopes as
// Electron's IPC. A random token (in the URL printed at start) is required for the page and the
// socket; the Host header must name this server (DNS rebinding) and the socket's Origin must be
// this server's page (another site's page cannot drive the console even if it learns the port).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { Envelope, type Backend } from '../../../protocol/console.js';

const MIME: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.woff2': 'font/woff2', '.svg': 'image/svg+xml', '.map': 'application/json' };

export interface BrowserHost {
  url: string;
  port: number;
  token: string;
  close(): Promise<void>;
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export async function serveBrowser(core: Backend, rendererDir: string, port = 0): Promise<BrowserHost> {
  const token = randomBytes(24).toString('base64url');
  const files = new Set(readdirSync(rendererDir));
  if (!files.has('index.html') || !files.has('app.js')) throw new Error(`${rendererDir}: no built renderer (index.html, app.js): run make app`);
  let origin = '';
  let hosts: string[] = [];

  const headers = (res: ServerResponse, type: string) => {
    res.setHeader('Content-Type', type);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Security-Policy', `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src ${origin.replace('http', 'ws')}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`);
  };

  const deny = (res: ServerResponse, code: number, why: string) => {
    res.statusCode = code;
    headers(res, 'text/plain; charset=utf-8');
    res.end(`${why}\n`);
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (!hosts.includes(req.headers.host ?? '')) return deny(res, 421, 'wrong Host: this console answers only on 127.0.0.1');
    if (req.method !== 'GET') return deny(res, 405, 'GET only');
    const u = new URL(req.url ?? '/', origin);
    const name = u.pathname === '/' ? 'index.html' : u.pathname.slice(1);
    if (name === 'index.html' && !same(u.searchParams.get('token') ?? '', token)) return deny(res, 403, 'open the URL the console printed when it started: it carries the access token');
    if (!files.has(name)) return deny(res, 404, 'not found');
    headers(res, MIME[extname(name)] ?? 'application/octet-stream');
    res.end(readFileSync(join(rendererDir, name)));
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });
  server.on('upgrade', (req, socket, head) => {
    const u = new URL(req.url ?? '/', origin);
    const ok = hosts.includes(req.headers.host ?? '') && u.pathname === '/api' && same(u.searchParams.get('token') ?? '', token) && hosts.some((h) => req.headers.origin === `http://${h}`);
    if (!ok) {
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => attach(core, ws));
  });

  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(port, '127.0.0.1', () => res());
  });
  const p = (server.address() as AddressInfo).port;
  origin = `http://127.0.0.1:${p}`;
  hosts = [`127.0.0.1:${p}`, `localhost:${p}`];
  return {
    url: `${origin}/?token=${token}`,
    port: p,
    token,
    close: () =>
      new Promise((res) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.close(() => res());
      }),
  };
}

/** One browser tab: requests in, results and pushes out, every frame checked. */
function attach(core: Backend, ws: WebSocket): void {
  const send = (e: Envelope) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(e));
  };
  const off = core.subscribe((method, params) => send({ type: 'push', method, params }));
  ws.on('close', off);
  ws.on('message', (data, binary) => {
    let msg: unknown;
    try {
      if (binary) throw new Error('binary frame');
      msg = JSON.parse(String(data));
    } catch {
      return send({ type: 'error', id: 0, message: 'a frame must be one JSON envelope' });
    }
    const e = Envelope.safeParse(msg);
    if (!e.success || e.data.type !== 'request') return send({ type: 'error', id: 0, message: 'expected {type:"request", id, method, params}' });
    const { id, method, params } = e.data;
    core.handle(method, params).then(
      (result) => send({ type: 'result', id, result }),
      (err: unknown) => send({ type: 'error', id, message: err instanceof Error ? err.message : String(err) }),
    );
  });
}
