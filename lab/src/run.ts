// What keeps a lab host running after it is installed: its datapath, started by its own agent
// inside its namespace (host/start: the keeper and generation 1.0.0 on uplink up0, detached), and
// one hitless-probe per host playing the host's VMs, sending to the VMs of the next host over the
// fabric. Both are idempotent: what runs is left alone. Status asks the agent and the probe.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../../agent/src/client/agentClient.js';
import { agent } from '../../protocol/agent.js';
import { CtlClient } from '../../agent/src/native/ctlClient.js';
import { probe } from '../../protocol/native/probe.js';
import type { FleetHost } from '../../protocol/files.js';
import { GuestEvent } from '../../protocol/native/guest.js';
import { guestImage, qemuCommand } from './guest.js';
import { cmdline, LabError, pidAlive, readPid, sleep } from './sys.js';

export const START_RELEASE = '1.0.0';
export const DEFAULT_PPS = 1000;
const DPDK_RUN = '/var/run/dpdk';

export function probePaths(root: string) {
  return {
    ctl: join(root, 'run', 'probe.sock'),
    events: join(root, 'run', 'probe-events.jsonl'),
    pid: join(root, 'run', 'probe.pid'),
    log: join(root, 'run', 'probe.log'),
  };
}

export function keeperSocket(root: string, vm: string): string {
  return join(root, 'run', 'keeper', 'vhost', `${vm}.sock`);
}

/**
 * Runs fn with an agent of host h: `nsenter --net=<netns> <root>/bin/hitless-agent --stdio`,
 * JSON-RPC over its stdio. Closing stdin ends the agent; its detached children keep running.
 */
export async function withAgent<T>(h: FleetHost, fn: (c: AgentClient) => Promise<T>, timeoutMs = 60_000): Promise<T> {
  // (the network namespace only, as the host's sshd runs it: ssh.ts)
  const child = spawn('nsenter', [`--net=/run/netns/${h.netns}`, h.agent, '--stdio'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.once('error', () => undefined);
  const client = new AgentClient(child.stdout, child.stdin);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      fn(client),
      exited.then((code) => {
        throw new LabError(`${h.name}: hitless-agent exited (code ${code}): ${stderr.trim()}`);
      }),
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new LabError(`${h.name}: hitless-agent gave no answer in ${timeoutMs} ms: ${stderr.trim()}`)), timeoutMs);
      }),
    ]);
  } catch (e) {
    if (e instanceof LabError) throw e;
    throw new LabError(`${h.name}: agent: ${(e as Error).message}${stderr.trim() ? `\n${stderr.trim()}` : ''}`);
  } finally {
    clearTimeout(timer);
    client.dispose();
    child.stdin.end();
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }
}

/** host/start on release 1.0.0 (a no-op when the host already runs); checks what it reports. */
export async function startHost(h: FleetHost): Promise<void> {
  const info = await withAgent(h, (c) => c.request(agent.hostStart, { release: START_RELEASE }));
  if (info.active?.release !== START_RELEASE) throw new LabError(`${h.name}: host/start left active ${JSON.stringify(info.active)}, expected ${START_RELEASE}`);
  if (!info.keeper.alive) throw new LabError(`${h.name}: host/start: the keeper is not alive`);
  for (const v of h.vms) {
    if (!existsSync(keeperSocket(h.root, v.name))) throw new LabError(`${h.name}: no keeper socket for ${v.name} after host/start`);
  }
}

/** Which of a host's VMs are QEMU guests (the lab's --vm-kind); the rest are probe VMs. */
export type GuestOf = (vm: string) => boolean;

/**
 * Flows of host k's probe, as its arguments: each probe VM sends to the same-index VM of the
 * next host (a ring; one host: its next VM) when that is a probe VM too; the host's first probe
 * VM sends each of the host's QEMU guests a flow the guest sends back (measured through the
 * guest, by this host's probe, so the host's agent witnesses the guest's switches).
 */
export function probeFlows(hosts: FleetHost[], k: number, pps: number, guest: GuestOf): string[] {
  const h = hosts[k]!;
  const args: string[] = [];
  const probeVms = h.vms.filter((v) => !guest(v.name));
  if (hosts.length > 1) {
    const next = hosts[(k + 1) % hosts.length]!;
    h.vms.forEach((v, j) => {
      const peer = next.vms[j];
      if (!guest(v.name) && peer && !guest(peer.name)) args.push('--flow', `${v.name}:${peer.mac}:${pps}`);
    });
  } else if (probeVms.length > 1) {
    const ring = [...probeVms].sort((a, b) => a.name.localeCompare(b.name));
    ring.forEach((v, i) => args.push('--flow', `${v.name}:${ring[(i + 1) % ring.length]!.name}:${pps}`));
  }
  const first = probeVms[0];
  if (first) for (const g of h.vms) if (guest(g.name)) args.push('--reflect', `${first.name}:${g.mac}:${pps}`);
  return args;
}

export function probeArgs(hosts: FleetHost[], k: number, pps: number, guest: GuestOf): string[] {
  const h = hosts[k]!;
  const p = probePaths(h.root);
  const vms = h.vms.filter((v) => !guest(v.name));
  return [
    '-l', '0', '--no-huge', '--no-shconf', '-m', String(128 * Math.ceil(vms.length / 8)), '--no-pci', `--file-prefix=lab-${h.netns}-probe`, '--log-level=error',
    '--',
    ...vms.flatMap((v) => ['--vm', `${v.name},${v.mac},${keeperSocket(h.root, v.name)}`]),
    ...probeFlows(hosts, k, pps, guest),
    '--gap-us', '5000',
    '--ctl', p.ctl,
    '--events', p.events,
  ];
}

/** The pid of host h's probe if it runs (its pidfile names a live hitless-probe of this root). */
export function probePid(h: FleetHost): number | null {
  const pid = readPid(probePaths(h.root).pid);
  if (pid === undefined || !pidAlive(pid)) return null;
  const cl = cmdline(pid);
  return cl.includes('hitless-probe') && cl.includes(h.root) ? pid : null;
}

async function probeStats(h: FleetHost, timeoutMs = 3000) {
  const ctl = await CtlClient.connect(probePaths(h.root).ctl, timeoutMs);
  try {
    return await ctl.request(probe.statsShow, {});
  } finally {
    ctl.close();
  }
}

/** Starts host k's probe, detached inside its namespace, unless one runs; waits until it sends. */
export async function startProbe(hosts: FleetHost[], k: number, pps: number, guest: GuestOf): Promise<number> {
  const h = hosts[k]!;
  const p = probePaths(h.root);
  const running = probePid(h);
  if (running !== null) return running;
  mkdirSync(join(h.root, 'run'), { recursive: true });
  rmSync(p.ctl, { force: true });
  const log = openSync(p.log, 'a');
  // ip netns exec execs the command in place: the child's pid is the probe's.
  const child = spawn('ip', ['netns', 'exec', h.netns, join(h.root, 'bin', 'hitless-probe'), ...probeArgs(hosts, k, pps, guest)], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  let exited: number | null = null;
  child.once('exit', (code, sig) => (exited = code ?? (sig ? 128 : -1)));
  child.unref();
  writeFileSync(p.pid, `${child.pid}\n`);
  const tail = () => {
    try {
      return readFileSync(p.log, 'utf8').slice(-1500).trim();
    } catch {
      return '';
    }
  };
  for (const deadline = Date.now() + 20_000; Date.now() < deadline; ) {
    if (exited !== null) throw new LabError(`${h.name}: hitless-probe exited during start-up (${exited}); ${p.log}:\n${tail()}`);
    if (existsSync(p.ctl)) {
      const st = await probeStats(h, 1000).catch(() => null);
      if (st && st.state === 'running') return child.pid!;
    }
    await sleep(100);
  }
  throw new LabError(`${h.name}: hitless-probe not running after 20 s; ${p.log}:\n${tail()}`);
}

export function guestPaths(root: string, vm: string) {
  return { pid: join(root, 'run', `guest-${vm}.pid`), console: join(root, 'run', `guest-${vm}.console`), log: join(root, 'run', `guest-${vm}.log`) };
}

/** The pid of a lab QEMU guest if it runs (its pidfile names a live QEMU of this VM). */
export function guestPid(h: FleetHost, vm: string): number | null {
  const pid = readPid(guestPaths(h.root, vm).pid);
  if (pid === undefined || !pidAlive(pid)) return null;
  const cl = cmdline(pid);
  return cl.includes('qemu-system') && cl.includes(keeperSocket(h.root, vm)) ? pid : null;
}

/** A console line that is the guest's ready event (protocol/native/guest.ts). */
function isReady(line: string): boolean {
  try {
    return GuestEvent.safeParse(JSON.parse(line)).data?.event === 'ready';
  } catch {
    return false; // boot messages before the program runs
  }
}

/** Boots host h's QEMU guests (detached, each the vhost-user client of its keeper socket, its
 * console in a file) unless they run; resolves once every one reflects. */
export async function startGuests(h: FleetHost, guest: GuestOf): Promise<void> {
  const img = await guestImage();
  const waits = h.vms.filter((v) => guest(v.name)).map(async (v) => {
    if (guestPid(h, v.name) !== null) return;
    const p = guestPaths(h.root, v.name);
    writeFileSync(p.console, '');
    const [bin, ...args] = qemuCommand({ name: v.name, mac: v.mac, socket: keeperSocket(h.root, v.name), server: false }, img, { file: p.console });
    const errors = openSync(p.log, 'a');
    const child = spawn(bin!, args, { detached: true, stdio: ['ignore', 'ignore', errors] });
    closeSync(errors);
    let exited: number | null = null;
    child.once('exit', (code, sig) => (exited = code ?? (sig ? 128 : -1)));
    child.unref();
    writeFileSync(p.pid, `${child.pid}\n`);
    for (const deadline = Date.now() + 120_000; Date.now() < deadline; ) {
      if (exited !== null) throw new LabError(`${v.name}: QEMU exited during boot (${exited}); ${p.console}:\n${readFileSync(p.console, 'utf8').slice(-1500)}`);
      if (readFileSync(p.console, 'utf8').split('\n').some(isReady)) return;
      await sleep(250);
    }
    throw new LabError(`${v.name}: the guest did not come up in 120 s; ${p.console}:\n${readFileSync(p.console, 'utf8').slice(-1500)}`);
  });
  await Promise.all(waits);
}

export interface FlowCount {
  src: string;
  dst: string;
  received: number;
}

export interface RunStatus {
  /** the release of the active generation, as the agent reports it (null: none) */
  active: string | null;
  /** what runs it: hitless-dp or ovs-dpdk */
  kind: string | null;
  keeper: boolean;
  agent_error: string | null;
  probe: number | null;
  probe_state: string | null;
  /** flows this host's probe receives (from the other host's VMs) */
  flows: FlowCount[];
  /** link-down events over this host's probe VMs */
  link_down: number | null;
  /** this host's QEMU guests and their pids (null: not running) */
  guests: { vm: string; pid: number | null }[];
}

export async function runStatus(h: FleetHost, guest: GuestOf): Promise<RunStatus> {
  const guests = h.vms.filter((v) => guest(v.name)).map((v) => ({ vm: v.name, pid: guestPid(h, v.name) }));
  const out: RunStatus = { active: null, kind: null, keeper: false, agent_error: null, probe: probePid(h), probe_state: null, flows: [], link_down: null, guests };
  const asked = withAgent(h, (c) => c.request(agent.hostInfo, {}), 20_000).then(
    (info) => {
      out.active = info.active?.release ?? null;
      out.kind = info.active ? (info.active.kind ?? 'hitless-dp') : null;
      out.keeper = info.keeper.alive;
    },
    (e: Error) => {
      out.agent_error = e.message;
    },
  );
  if (out.probe !== null) {
    try {
      const st = await probeStats(h);
      out.probe_state = st.state;
      // a flow through a guest names it by MAC: shown by its name
      const name = (d: string) => h.vms.find((v) => v.mac === d.toLowerCase())?.name ?? d;
      out.flows = st.flows.filter((f) => f.rx_side === 'local').map((f) => ({ src: f.src, dst: name(f.dst), received: (f as { received: number }).received }));
      out.link_down = Object.values(st.vms).reduce((n, v) => n + v.link_down, 0);
    } catch {
      out.probe_state = 'no answer';
    }
  }
  await asked;
  return out;
}

/** The EAL --file-prefix a process runs with, if any. */
export function filePrefixOf(pid: number): string | undefined {
  return cmdline(pid).match(/--file-prefix[= ](\S+)/)?.[1];
}

/** File prefixes live processes use (a directory in use is never removed). */
function prefixesInUse(): Set<string> {
  const used = new Set<string>();
  for (const d of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d) || !pidAlive(Number(d))) continue;
    const fp = filePrefixOf(Number(d));
    if (fp) used.add(fp);
  }
  return used;
}

/** Removes DPDK's runtime directories of these file prefixes once no live process uses them. */
export function removeDpdkDirs(prefixes: Iterable<string>): number {
  let n = 0;
  const used = prefixesInUse();
  for (const p of new Set(prefixes)) {
    if (!/^[A-Za-z0-9_.-]+$/.test(p) || used.has(p)) continue;
    const d = join(DPDK_RUN, p);
    if (existsSync(d)) {
      rmSync(d, { recursive: true, force: true });
      n++;
    }
  }
  return n;
}
