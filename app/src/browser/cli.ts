// hitless-console: the console in browser mode. Serves the console on 127.0.0.1 (random port
// unless --port) behind a random token, prints the URL to open, and optionally opens it in
// Chromium. The desktop app (Electron) runs the same core; this is for machines without it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConsoleCore } from '../core/console.js';
import { chromiumPdf, findChromium } from './pdf.js';
import { serveBrowser } from './server.js';

const USAGE = `usage: hitless-console [options]
  --state DIR        console state: fleet, audit log, campaigns (default ~/.local/state/hitless)
  --fleet FILE       import the hosts of a lab fleet file at start (lab/lab up writes one)
  --ssh-config FILE  ssh config for host aliases (default ~/.ssh/config)
  --known-hosts FILE known_hosts for hosts added by address (default ~/.ssh/known_hosts)
  --operator NAME    who is at the console (default: the login name)
  --approvers LIST   operators allowed to approve switchovers, comma separated (default: all);
                     a host with an approvers file trusts only signatures (--identity)
  --identity KEY     the SSH key approvals are signed with (default $HITLESS_IDENTITY, else each
                     host's own identity file)
  --releases DIR     the release tars offered for upload to hosts (default: the repository's dist/,
                     which make package writes)
  --port N           port on 127.0.0.1 (default: a free one)
  --url-file FILE    also write the URL (with its token) to FILE, mode 0600
  --open             open the console in Chromium`;

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        state: { type: 'string', default: join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'hitless') },
        fleet: { type: 'string' },
        'ssh-config': { type: 'string', default: join(homedir(), '.ssh', 'config') },
        'known-hosts': { type: 'string', default: join(homedir(), '.ssh', 'known_hosts') },
        operator: { type: 'string', default: process.env.HITLESS_OPERATOR ?? userInfo().username },
        approvers: { type: 'string' },
        identity: { type: 'string', ...(process.env.HITLESS_IDENTITY ? { default: process.env.HITLESS_IDENTITY } : {}) },
        releases: { type: 'string' },
        port: { type: 'string', default: '0' },
        'url-file': { type: 'string' },
        open: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (e) {
    console.error(`hitless-console: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) return void console.log(USAGE);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`hitless-console: --port: '${values.port}' is not a port number\n${USAGE}`);
    process.exit(2);
  }
  const chromium = findChromium();
  const core = new ConsoleCore({
    stateDir: resolve(values.state!),
    sshConfig: values['ssh-config']!,
    knownHosts: values['known-hosts']!,
    operator: values.operator!,
    approvers: values.approvers ? values.approvers.split(',').map((s) => s.trim()).filter(Boolean) : null,
    identity: values.identity ? resolve(values.identity) : null,
    transport: 'browser',
    pdf: chromium ? chromiumPdf(chromium) : null,
    secrets: null,
    releaseLibrary: resolve(values.releases ?? join(dirname(fileURLToPath(import.meta.url)), '../../../dist')),
  });
  if (values.fleet) {
    const r = (await core.handle('fleet/import', { from: 'fleet-file', path: resolve(values.fleet) })) as { added: string[] };
    if (r.added.length) console.error(`hitless-console: imported ${r.added.join(', ')} from ${values.fleet}`);
  }
  const here = dirname(fileURLToPath(import.meta.url));
  const host = await serveBrowser(core, resolve(here, '../../dist/renderer'), port);
  if (values['url-file']) {
    mkdirSync(dirname(resolve(values['url-file'])), { recursive: true });
    writeFileSync(values['url-file'], `${host.url}\n`, { mode: 0o600 });
  }
  console.log(`hitless-console: open ${host.url}`);
  if (values.open) {
    if (!chromium) console.error('hitless-console: --open: no Chromium found (apt install chromium); open the URL above yourself');
    else {
      const args = [`--app=${host.url}`, `--user-data-dir=${join(resolve(values.state!), 'chromium')}`];
      if (process.getuid?.() === 0) args.unshift('--no-sandbox');
      spawn(chromium, args, { stdio: 'ignore', detached: true }).unref();
    }
  }
  const stop = () => {
    core.close();
    void host.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((e: unknown) => {
  console.error(`hitless-console: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
