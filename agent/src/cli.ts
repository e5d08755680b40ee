// hitless-agent: what SSH runs on each host. `hitless-agent --stdio --root DIR` speaks JSON-RPC
// on stdin/stdout (logs on stderr); it has no network listener. It resumes or rolls back what
// a previous agent left under way, and when its connection drops in the middle of an
// operation (an auto run) it finishes that operation before exiting.
import { parseArgs } from 'node:util';
import type { MessageConnection } from 'vscode-jsonrpc/node.js';
import { loadConfig } from './host/config.js';
import { notifier, serve } from './host/server.js';
import { TrafficMeter } from './host/traffic.js';
import { ProbeWitness } from './host/probeWitness.js';
import { HostAgent } from './host/upgrade.js';
import { sessionActor } from './host/journal.js';
import type { FailoverWatch } from './host/failover.js';
import { events } from '../../protocol/agent.js';
import { AGENT_VERSION } from './host/server.js';
import { releaseCommand } from './releaseCli.js';

function usage(): never {
  console.error('usage: hitless-agent --stdio --root DIR\n       hitless-agent --version\n       hitless-agent release verify|install ...');
  process.exit(2);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--version') {
    console.log(`hitless-agent ${AGENT_VERSION} (node ${process.version})`);
    return;
  }
  if (argv[0] === 'release') process.exit(await releaseCommand(argv.slice(1)));
  let values;
  try {
    ({ values } = parseArgs({ options: { stdio: { type: 'boolean' }, root: { type: 'string' }, help: { type: 'boolean' } }, strict: true }));
  } catch (e) {
    console.error(`hitless-agent: ${(e as Error).message}`);
    usage();
  }
  if (values.help || !values.stdio || !values.root) usage();
  const cfg = loadConfig(values.root);
  let conn: MessageConnection | null = null;
  // the lab's probe VMs witness each switch from the VMs' side; a host without one is measured
  // by its datapath's counters alone
  const witness = cfg.probe_ctl ? new ProbeWitness(cfg.probe_ctl, cfg.vms) : null;
  const notify = notifier(() => conn);
  // health to whoever is connected: every 2 s, and at once when the state changes
  const pushHealth = () =>
    void host.health().then(
      (problems) => conn?.sendNotification(events.health.method, { host: cfg.host, ok: problems.length === 0, problems }).catch(() => undefined),
      () => undefined,
    );
  const host: HostAgent = new HostAgent(values.root, cfg, (s, m) => (notify(s, m), pushHealth()), witness, sessionActor());
  // what recovery cannot finish is reported, and the agent serves anyway: the operator must be
  // able to see the host and act (rollback, abort) rather than find it unreachable
  await host.serial(() => host.recover()).then(
    (recovered) => recovered && console.error(`hitless-agent: ${recovered}`),
    (e: Error) => console.error(`hitless-agent: recovery incomplete: ${e.message}`),
  );
  conn = serve(host, process.stdin, process.stdout);
  let failovers: FailoverWatch | null = null;
  // registered at once: a session that ends while the agent is still starting (ssh host true)
  // must still end the agent
  conn.onClose(() => {
    conn = null;
    const leave = () => {
      failovers?.stop();
      host.sup.close();
      witness?.close();
      process.exit(0);
    };
    if (!host.working) leave();
    const t = setInterval(() => {
      if (!host.working) {
        clearInterval(t);
        leave();
      }
    }, 100);
  });
  const beat = setInterval(pushHealth, 2000);
  beat.unref();
  // an OVS-DPDK host's VMs as the cloud plugs and unplugs them in its DB (discover.ts): looked
  // for every 5 s between operations (each operation that depends on them looks first). Until
  // a VM is taken OVS serves it directly, so a longer interval delays only its one reconnect.
  let lookFailed = '';
  const look = setInterval(() => {
    if (host.working || !host.onOvs()) return;
    void host.serial(() => host.discover(true)).then(
      () => (lookFailed = ''),
      (e: Error) => {
        if (e.message !== lookFailed) console.error(`hitless-agent: looking for VMs in the OVS DB: ${e.message}`);
        lookFailed = e.message;
      },
    );
  }, 5000);
  look.unref();
  // per-VM rates for the console's live view, every second
  const meter = new TrafficMeter(host);
  // (a sample still running when the next is due, on a host short of CPU, is not joined by
  // another: they would pile up and take more of what is short)
  let sampling = false;
  const rates = setInterval(() => {
    if (sampling) return;
    sampling = true;
    void meter
      .sample()
      .then(
        (vms) => {
          if (vms.length) void conn?.sendNotification(events.traffic.method, { host: cfg.host, t_ms: Date.now(), vms }).catch(() => undefined);
        },
        () => undefined,
      )
      .finally(() => (sampling = false));
  }, 1000);
  rates.unref();
  // generation deaths: recorded, and a standby restored, while this agent runs
  failovers = await host.watch().catch((e: Error) => {
    console.error(`hitless-agent: not watching for generation deaths: ${e.message}`);
    return null;
  });
}

main().catch((e: unknown) => {
  console.error(`hitless-agent: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
