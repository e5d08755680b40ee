// The desktop app's main process: hosts the console core and one locked-down window.
// The renderer is sandboxed, context-isolated, without Node; it is served from the app's own
// privileged scheme (hitless://app/) with a strict CSP; it may not navigate away, open windows
// or get any permission; its IPC messages are accepted only from that origin and checked
// against the API's schemas (in the core). PDF reports are printed here with printToPDF.
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { app, BrowserWindow, ipcMain, Menu, protocol, session, type IpcMainEvent, type WebContents } from 'electron';
import { IPC_CHANNEL } from '../../../protocol/rpc.js';
import { Envelope } from '../../../protocol/console.js';
import { ConsoleCore } from '../core/console.js';
import { SafeSecrets } from './secrets.js';

const ORIGIN = 'hitless://app';
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const rendererDir = join(__dirname, '..', 'renderer');

protocol.registerSchemesAsPrivileged([{ scheme: 'hitless', privileges: { standard: true, secure: true } }]);
app.enableSandbox();
// one console per operator session: its state directory (campaigns, audit log) has one writer;
// a second start brings the first one's window forward
const primary = app.requestSingleInstanceLock();
if (!primary) app.quit();

/** Every page stays on the app's origin: navigations, redirects and frame navigations elsewhere
 * are stopped, no window opens, no webview attaches. */
function lockDown(wc: WebContents): void {
  wc.setWindowOpenHandler(() => ({ action: 'deny' }));
  const stay = (e: { preventDefault(): void }, url: string) => {
    if (!url.startsWith(`${ORIGIN}/`)) e.preventDefault();
  };
  wc.on('will-navigate', (e, url) => stay(e, url));
  wc.on('will-redirect', (e, url) => stay(e, url));
  wc.on('will-frame-navigate', (e) => stay(e, e.url));
  wc.on('will-attach-webview', (e) => e.preventDefault());
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

async function printPdf(html: string): Promise<Buffer> {
  const w = new BrowserWindow({ show: false, webPreferences: { sandbox: true, contextIsolation: true, nodeIntegration: false, javascript: false } });
  try {
    await w.loadURL(`data:text/html;charset=utf-8,${encodeURIComponent(html)}`);
    return await w.webContents.printToPDF({ printBackground: true });
  } finally {
    w.destroy();
  }
}

async function main(): Promise<void> {
  await app.whenReady();
  // no default menu (its View menu opens DevTools) unless the console runs from a source tree
  if (app.isPackaged) Menu.setApplicationMenu(null);
  const home = app.getPath('home');
  const core = new ConsoleCore({
    stateDir: arg('state') ?? app.getPath('userData'),
    sshConfig: arg('ssh-config') ?? join(home, '.ssh', 'config'),
    knownHosts: arg('known-hosts') ?? join(home, '.ssh', 'known_hosts'),
    operator: process.env.HITLESS_OPERATOR ?? userInfo().username,
    approvers: process.env.HITLESS_APPROVERS ? process.env.HITLESS_APPROVERS.split(',') : null,
    // the SSH key approvals are signed with (else each host's identity file)
    identity: process.env.HITLESS_IDENTITY ?? null,
    transport: 'electron',
    pdf: printPdf,
    secrets: new SafeSecrets(join(app.getPath('userData'), 'secrets.json')),
    // the host package and signed releases the desktop package carries (electron-builder.yml)
    releaseLibrary: app.isPackaged ? join(process.resourcesPath, 'host') : join(app.getAppPath(), 'dist'),
  });
  const fleet = arg('fleet');
  if (fleet) await core.handle('fleet/import', { from: 'fleet-file', path: fleet }).catch((e: Error) => console.error(`hitless: ${e.message}`));

  // the renderer's files, each with the CSP; nothing outside the renderer directory
  protocol.handle('hitless', async (req) => {
    const u = new URL(req.url);
    const name = u.pathname === '/' ? 'index.html' : u.pathname.slice(1);
    if (u.host !== 'app' || !/^[A-Za-z0-9_.-]+$/.test(name)) return new Response('not found', { status: 404 });
    try {
      const body = await readFile(join(rendererDir, name));
      const type = name.endsWith('.html') ? 'text/html' : name.endsWith('.js') ? 'text/javascript' : name.endsWith('.css') ? 'text/css' : 'application/octet-stream';
      return new Response(body, { headers: { 'content-type': type, 'content-security-policy': CSP } });
    } catch {
      return new Response('not found', { status: 404 });
    }
  });
  session.defaultSession.setPermissionRequestHandler((_wc, _perm, cb) => cb(false));
  session.defaultSession.setPermissionCheckHandler(() => false);

  const win = new BrowserWindow({
    width: 1400,
    height: 900,
    title: 'Hitless',
    webPreferences: { sandbox: true, contextIsolation: true, nodeIntegration: false, webSecurity: true, spellcheck: false, preload: join(__dirname, 'preload.cjs') },
  });
  if (app.isPackaged) win.webContents.on('devtools-opened', () => win.webContents.closeDevTools());
  app.on('second-instance', () => {
    if (win.isMinimized()) win.restore();
    win.focus();
  });

  const off = core.subscribe((method, params) => {
    if (!win.isDestroyed()) win.webContents.send(IPC_CHANNEL, { type: 'push', method, params });
  });
  ipcMain.on(IPC_CHANNEL, (e: IpcMainEvent, raw: unknown) => {
    if (!e.senderFrame || !e.senderFrame.url.startsWith(`${ORIGIN}/`)) return; // only our page
    const m = Envelope.safeParse(raw);
    if (!m.success || m.data.type !== 'request') return e.sender.send(IPC_CHANNEL, { type: 'error', id: 0, message: 'expected {type:"request", id, method, params}' });
    const { id, method, params } = m.data;
    core.handle(method, params).then(
      (result) => e.sender.send(IPC_CHANNEL, { type: 'result', id, result }),
      (err: unknown) => e.sender.send(IPC_CHANNEL, { type: 'error', id, message: err instanceof Error ? err.message : String(err) }),
    );
  });
  win.on('closed', () => {
    off();
    core.close();
    app.quit();
  });
  await win.loadURL(`${ORIGIN}/index.html`);
}

app.on('web-contents-created', (_e, wc) => lockDown(wc));
if (primary) main().catch((e: unknown) => {
  console.error(`hitless: ${e instanceof Error ? e.message : String(e)}`);
  app.exit(1);
});
