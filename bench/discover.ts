// bench/run discover [--quick] [--looks N]
//
// What the agent's look at an OVS-DPDK host's DB costs (agent/src/host/discover.ts). It runs
// every 5 s while an agent runs on the host (without the OpenFlow comparison), and before every
// prepare, switch, run step and commit. Timed on a real host root (keeper, Debian ovs-vswitchd, 4 listed VMs of a probe
// under traffic): a look that finds nothing new, with the host idle and during an upgrade (when
// it also compares the target's OpenFlow state with the running generation's), and a look that
// takes a newly plugged VM (its port put back leading to the keeper, the keeper connecting to
// the VM's socket, the target given the port). Wall time and CPU: the agent's own and that of
// the ovs-vsctl/ovs-ofctl processes it runs. Beside them, the noise of the same run: the wall
// time of starting and reaping `true` (what one child process costs here at this moment).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../agent/src/host/config.js';
import { ovsLink, type Discovery } from '../agent/src/host/discover.js';
import { HostAgent } from '../agent/src/host/upgrade.js';
import { execKill, frontendSocket, hostRoot, probeOn } from '../testing/agentHost.js';
import { labVms, Testbed } from '../testing/testbed.js';
import { finish, numOpt, pct, quick, run, sleep } from './lib.js';

const looks = numOpt('discover', '--looks', quick ? 15 : 60);
const takes = quick ? 2 : 4;

/** CPU ms of this process's reaped children (ovs-vsctl, ovs-ofctl), from /proc/self/stat. */
function childCpuMs(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // fields 16 and 17 (cutime, cstime), counted from field 3 (state) at index 0
  return ((Number(f[13]) + Number(f[14])) * 1000) / 100;
}

interface Look {
  wall_ms: number;
  cpu_ms: number;
}

async function timed(fn: () => Promise<unknown>): Promise<Look> {
  const [c0, k0, t0] = [process.cpuUsage(), childCpuMs(), performance.now()];
  await fn();
  const wall = performance.now() - t0;
  const own = process.cpuUsage(c0);
  return { wall_ms: wall, cpu_ms: (own.user + own.system) / 1000 + childCpuMs() - k0 };
}

const fig = (xs: Look[]) => ({ wall_ms: pct(xs.map((x) => x.wall_ms)), cpu_ms: pct(xs.map((x) => x.cpu_ms)), n: xs.length });

async function main(): Promise<void> {
  const bed = new Testbed('discover');
  const root = hostRoot(bed, 'dsc', 4, false, { ovs: true });
  mkdirSync(join(root, 'vms'));
  const host = new HostAgent(root, loadConfig(root));
  const probes = [];
  try {
    await host.serial(() => host.start('1.0.0'));
    probes.push(await probeOn(bed, root, 'dsc', 4));
    await sleep(1000);
    const noise: number[] = [];
    const idle: Look[] = [];
    for (let i = 0; i < looks; i++) {
      const t = performance.now();
      execFileSync('true');
      noise.push(performance.now() - t);
      idle.push(await timed(() => host.serial(() => host.discover())));
      await sleep(100);
    }
    await host.serial(() => host.prepare('1.1.0', 'each'));
    const upgrading: Look[] = [];
    const periodic: Look[] = [];
    for (let i = 0; i < looks; i++) {
      upgrading.push(await timed(() => host.serial(() => host.discover())));
      periodic.push(await timed(() => host.serial(() => host.discover(true))));
      await sleep(100);
    }
    // VMs plugged as Nova plugs them (their frontends vhost-user servers), each taken by one look
    const taking: Look[] = [];
    const env = { ...process.env, OVS_RUNDIR: ovsLink(root) };
    for (const v of labVms(4 + takes).slice(4)) {
      const p = bed.probe({ name: `dsc${v.name}`, vms: [{ ...v, socket: frontendSocket(root, v.name), server: true }], flows: [], durationS: 3600, ctlPath: join(root, 'run', `${v.name}.sock`) });
      for (let i = 0; i < 100 && !existsSync(frontendSocket(root, v.name)); i++) await sleep(50);
      execFileSync('ovs-vsctl', ['add-port', 'br0', v.name, '--', 'set', 'Interface', v.name, 'type=dpdkvhostuserclient', `options:vhost-server-path=${frontendSocket(root, v.name)}`, `external_ids:attached-mac=${v.mac}`], { env });
      let r: Discovery | null = null;
      taking.push(await timed(async () => (r = await host.serial(() => host.discover()))));
      if (r!.found.join() !== v.name) throw new Error(`the look after plugging ${v.name} took ${JSON.stringify(r)}`);
      probes.push(await p);
    }
    const result = { datapath: 'ovs-dpdk', vms: 4, idle: fig(idle), upgrading_periodic: fig(periodic), upgrading_before_a_step: fig(upgrading), taking_a_vm: fig(taking), noise_spawn_ms: pct(noise), look_interval_s: 5 };
    const line = (what: string, f: ReturnType<typeof fig>) =>
      `- ${what} (${f.n}): wall p50 ${f.wall_ms.p50} ms, p99 ${f.wall_ms.p99}, max ${f.wall_ms.max}; CPU p50 ${f.cpu_ms.p50} ms, p99 ${f.cpu_ms.p99}, max ${f.cpu_ms.max}`;
    finish('discover', [
      `The agent's look at an OVS-DPDK host's DB (discover.ts), on a host with 4 listed VMs under traffic; the agent looks every 5 s, and before each step.`,
      '',
      line('a look that finds nothing new, host idle', result.idle),
      line('the periodic look during an upgrade', result.upgrading_periodic),
      line('the look before each step during an upgrade (target compared with the running generation)', result.upgrading_before_a_step),
      line('a look that takes a newly plugged VM', result.taking_a_vm),
      `- noise of the same run: starting and reaping \`true\` p50 ${result.noise_spawn_ms.p50} ms, p99 ${result.noise_spawn_ms.p99}, max ${result.noise_spawn_ms.max}`,
    ], result);
  } finally {
    for (const p of probes) await p.stop().catch(() => undefined);
    host.sup.close();
    execKill(bed.dir);
    await bed.cleanup();
  }
}

run('discover', main);
