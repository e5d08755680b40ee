// Agent hosts for integration tests: a host root with releases from this build, the real agent
// on stdio (as SSH runs it), probe VMs as the host's frontends, and the clean-up of what the
// agents started (keepers and generations run detached from them).
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../agent/src/client/agentClient.js';
import { CtlClient } from '../agent/src/native/ctlClient.js';
import { Ovs } from '../agent/src/native/ovs.js';
import { events, type TrafficVm } from '../protocol/agent.js';
import { ReleaseManifest } from '../protocol/files.js';
import { type Measurement } from '../protocol/measure.js';
import { dp } from '../protocol/native/dp.js';
import { datapathDrops } from './lossReport.js';
import { nativeBin, type ProbeProcess } from './procs.js';
import { labVms, type Testbed } from './testbed.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface HostExtra {
  /** the VMs' frontends are vhost-user servers (QEMU server=on): the keeper connects to them */
  frontendServers?: boolean;
  restoreStandby?: boolean;
  /** releases 1.0.0 and 1.1.0 of stock OVS-DPDK (Debian's ovs-vswitchd) instead of hitless-dp */
  ovs?: boolean;
}

/** Debian's DPDK build of ovs-vswitchd: the binary of the OVS-DPDK test releases. */
export const OVS_VSWITCHD = '/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk';

/** Where a frontend that is the server listens. */
export function frontendSocket(root: string, vm: string): string {
  return join(root, 'vms', `${vm}.sock`);
}

/**
 * A host root: two releases (both from this build), the keeper, etc/agent.json. With manifests:
 * release.json for each, 1.0.0 shipping the L2 stage at state layout 1 (as the lab does), and a
 * third release 1.2.0 whose manifest declares another process core.
 */
export function hostRoot(bed: Testbed, name: string, vms: number, manifests = false, extra: HostExtra = {}): string {
  const root = join(bed.dir, name);
  const built = ReleaseManifest.parse(JSON.parse(readFileSync(join(repo, 'native/build/release.json'), 'utf8')));
  if (built.kind !== 'hitless-dp') throw new Error('native/build/release.json is not a hitless-dp manifest');
  for (const v of extra.ovs ? ['1.0.0', '1.1.0'] : []) {
    mkdirSync(join(root, 'releases', v, 'bin'), { recursive: true });
    symlinkSync(OVS_VSWITCHD, join(root, 'releases', v, 'bin', 'ovs-vswitchd'));
    const m: ReleaseManifest = { release: v, kind: 'ovs-dpdk', ovs: '3.1', dpdk: '22.11', modes: ['handoff'] };
    writeFileSync(join(root, 'releases', v, 'release.json'), JSON.stringify(m));
  }
  for (const v of extra.ovs ? [] : manifests ? ['1.0.0', '1.1.0', '1.2.0'] : ['1.0.0', '1.1.0']) {
    const layout1 = manifests && v === '1.0.0';
    mkdirSync(join(root, 'releases', v, 'bin'), { recursive: true });
    symlinkSync(nativeBin('hitless-dp'), join(root, 'releases', v, 'bin', 'hitless-dp'));
    symlinkSync(
      layout1 ? join(repo, 'native/build/src/fwd/hitless-fwd-l2-layout1.so') : nativeBin('hitless-fwd-l2.so'),
      join(root, 'releases', v, 'bin', 'hitless-fwd-l2.so'),
    );
    if (manifests) {
      const m: ReleaseManifest = { ...built, release: v, fwd: { ...built.fwd, layout: layout1 ? 1 : 2 }, core: v === '1.2.0' ? 'f'.repeat(16) : built.core };
      writeFileSync(join(root, 'releases', v, 'release.json'), JSON.stringify(m));
    }
  }
  mkdirSync(join(root, 'bin'), { recursive: true });
  // where frontends that are the vhost-user servers listen (frontendSocket)
  if (extra.frontendServers) mkdirSync(join(root, 'vms'), { recursive: true });
  symlinkSync(nativeBin('hitless-keeper'), join(root, 'bin', 'hitless-keeper'));
  symlinkSync(nativeBin('hitless-hold'), join(root, 'bin', 'hitless-hold'));
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(
    join(root, 'etc', 'agent.json'),
    JSON.stringify({
      host: name,
      vms: labVms(vms).map((v) => ({ name: v.name, mac: v.mac, ...(extra.frontendServers ? { frontend_socket: frontendSocket(root, v.name) } : {}) })),
      probe_ctl: join(root, 'run', 'probe.sock'),
      // releases from this build tree: unsigned (signed releases: agent/src/host/release.test.ts)
      unsigned_releases: true,
      ...(extra.restoreStandby === false ? { restore_standby: false } : {}),
    }),
  );
  return root;
}

export interface Agent {
  proc: ChildProcess;
  client: AgentClient;
  stderr: () => string;
  measurements: Measurement[];
  traffic: TrafficVm[][];
}

export function startAgent(root: string): Agent {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(repo, 'agent/src/cli.ts'), '--stdio', '--root', root], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => ((err += d), appendFileSync(join(root, 'agent.stderr'), d)));
  const client = new AgentClient(proc.stdout!, proc.stdin!);
  const measurements: Measurement[] = [];
  client.on(events.measurement, (p) => measurements.push(p.measurement));
  const traffic: TrafficVm[][] = [];
  client.on(events.traffic, (p) => traffic.push(p.vms));
  return { proc, client, stderr: () => err, measurements, traffic };
}

/** The generations' drop counters, for a failure to explain itself. */
export async function genDrops(root: string, gens: string[]): Promise<string> {
  const stats = await Promise.all(
    gens.map(async (g) => {
      const c = await CtlClient.connect(join(root, 'run', `gen-${g}`, 'ctl.sock'), 2000);
      try {
        return await c.request(dp.statsShow, {});
      } finally {
        c.close();
      }
    }),
  );
  return datapathDrops(gens, stats);
}

export function exited(p: ChildProcess): Promise<void> {
  return p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once('exit', () => r()));
}

export async function probeOn(bed: Testbed, root: string, name: string, n: number, frontendServers = false): Promise<ProbeProcess> {
  const vms = labVms(n).map((v) =>
    frontendServers ? { ...v, socket: frontendSocket(root, v.name), server: true } : { ...v, socket: join(root, 'run', 'keeper', 'vhost', `${v.name}.sock`) },
  );
  return bed.probe({ name, vms, flows: vms.map((v, i) => ({ src: v.name, dst: vms[(i + 1) % n]!.name, pps: 5000 })), durationS: 3600, ctlPath: join(root, 'run', 'probe.sock') });
}



/** Kill every keeper and generation under dir (they run detached from the agents). */
export function execKill(dir: string): void {
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      // an OVS-DPDK generation: its ovsdb-server, namespace and hugepages too
      else if (e.name === 'ovs.json') Ovs.at(d).stopSync();
      else if (e.name === 'dp.pid' || e.name === 'keeper.pid') {
        try {
          process.kill(Number(readFileSync(p, 'utf8').trim()), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  };
  walk(dir);
}

/** The agents a test file starts on a test bed, and the clean-up of everything they started. */
export function agentsOn(bed: Testbed): { spawn: (root: string) => Agent; cleanup: () => Promise<void> } {
  const agents: Agent[] = [];
  return {
    spawn: (root) => {
      const a = startAgent(root);
      agents.push(a);
      return a;
    },
    cleanup: async () => {
      for (const a of agents) a.proc.kill('SIGKILL');
      // the generations and keepers are detached: stop what the agents started
      execKill(bed.dir);
      await bed.cleanup();
    },
  };
}
