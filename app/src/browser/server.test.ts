import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { ConsoleCore } from '../core/console.js';
import { serveBrowser, type BrowserHost } from './server.js';

const dir = mkdtempSync(join(tmpdir(), 'hl-browser-'));
let core: ConsoleCore;
let host: BrowserHost;

before(async () => {
  mkdirSync(join(dir, 'renderer'));
  writeFileSync(join(dir, 'renderer', 'index.html'), '<!doctype html><div id="root"></div>');
  writeFileSync(join(dir, 'renderer', 'app.js'), 'void 0;');
  writeFileSync(join(dir, 'secret.txt'), 'not served');
  core = new ConsoleCore({ stateDir: join(dir, 'state'), sshConfig: '/nonexistent', knownHosts: join(dir, 'kh'), operator: 'ana', approvers: ['bo'], transport: 'browser', pdf: null, secrets: null });
  host = await serveBrowser(core, join(dir, 'renderer'));
});
after(async () => {
  core.close();
  await host.close();
});

function get(path: string, hostHeader = `127.0.0.1:${host.port}`): Promise<{ status: number; body: string; csp: string | undefined }> {
  return new Promise((res, rej) => {
    const r = request({ host: '127.0.0.1', port: host.port, path, headers: { host: hostHeader } }, (m) => {
      let body = '';
      m.on('data', (d: Buffer) => (body += d.toString()));
      m.on('end', () => res({ status: m.statusCode!, body, csp: m.headers['content-security-policy'] as string | undefined }));
    });
    r.on('error', rej);
    r.end();
  });
}

function ws(token: string, origin: string): Promise<WebSocket> {
  return new Promise((res, rej) => {
    const s = new WebSocket(`ws://127.0.0.1:${host.port}/api?token=${token}`, { origin });
    s.once('open', () => res(s));
    s.once('error', rej);
  });
}

function call(s: WebSocket, id: number, method: string, params: unknown): Promise<Record<string, unknown>> {
  return new Promise((res) => {
    const on = (d: WebSocket.RawData) => {
      const m = JSON.parse(String(d)) as Record<string, unknown>;
      if (m.id === id) {
        s.off('message', on);
        res(m);
      }
    };
    s.on('message', on);
    s.send(JSON.stringify({ type: 'request', id, method, params }));
  });
}

test('browser mode: the page needs the token, the Host header must be this server, nothing outside the renderer is served', async () => {
  const ok = await get(`/?token=${host.token}`);
  assert.equal(ok.status, 200);
  assert.match(ok.csp!, /default-src 'none'; script-src 'self'/);
  assert.match(ok.csp!, new RegExp(`connect-src ws://127\\.0\\.0\\.1:${host.port}`));
  assert.equal((await get('/')).status, 403);
  assert.equal((await get('/?token=wrong')).status, 403);
  assert.equal((await get(`/?token=${host.token}`, `evil.example:${host.port}`)).status, 421);
  assert.equal((await get('/app.js')).status, 200);
  assert.equal((await get('/../secret.txt')).status, 404);
  assert.equal((await get('/%2e%2e/secret.txt')).status, 404);
});

test('browser mode: the API socket refuses a wrong token or a foreign origin', async () => {
  const origin = `http://127.0.0.1:${host.port}`;
  await assert.rejects(ws('wrong', origin), /403/);
  await assert.rejects(ws(host.token, 'http://evil.example'), /403/);
  const s = await ws(host.token, origin);
  s.close();
});

test('browser mode: requests are answered, bad input is refused naming the field, approvals are for approvers only', async () => {
  const s = await ws(host.token, `http://127.0.0.1:${host.port}`);
  try {
    const info = await call(s, 1, 'session/info', {});
    assert.deepEqual(info.result, { operator: 'ana', may_approve: false, transport: 'browser', version: '0.1.0' });
    assert.equal((await call(s, 2, 'no/such', {})).message, 'unknown method "no/such"');
    const bad = await call(s, 3, 'campaign/preview', { hosts: [], release: '1.1', canary: null, batch: 1, approval: 'each-vm', budget: { max_gap_ms: 10, max_lost: 0 } });
    assert.equal(bad.message, 'campaign/preview: hosts: pick at least one host');
    const badAdd = await call(s, 4, 'fleet/add', { name: 'h1', ssh: { host: 'a b', port: 22, user: 'root', identity: null }, agent_command: 'x', group: null });
    assert.match(String(badAdd.message), /^fleet\/add: ssh/);
    const deny = await call(s, 5, 'approval/decide', { id: 'a-1', decision: 'approve', reason: 'ok' });
    assert.equal(deny.message, 'approval/decide: ana is not one of the approvers (bo)');
    const noReason = await call(s, 6, 'approval/decide', { id: 'a-1', decision: 'deny', reason: '  ' });
    assert.equal(noReason.message, 'approval/decide: reason: a reason is required');
    const junk = await new Promise<Record<string, unknown>>((res) => {
      s.once('message', (d) => res(JSON.parse(String(d)) as Record<string, unknown>));
      s.send('{not json');
    });
    assert.deepEqual(junk, { type: 'error', id: 0, message: 'a frame must be one JSON envelope' });
    const passphrase = await call(s, 7, 'host/passphrase', { name: 'h1', passphrase: 'x' });
    assert.match(String(passphrase.message), /no host h1/);
  } finally {
    s.close();
  }
});
