// VMs found, not hand-listed, on an OVS-DPDK host (DESIGN §12). The cloud's tooling (Nova's
// os-vif, or an operator with ovs-vsctl) plugs a VM the way it does on any OVS host: a port of
// type dpdkvhostuserclient whose options:vhost-server-path is the VM's own socket (QEMU
// server=on) and whose external_ids:attached-mac is its MAC. It does so in the active
// generation's DB, which <root>/run/ovs always leads to (OVS_RUNDIR for ovs-vsctl and ovs-ofctl).
//
// discover() reconciles the host with that DB, and is run before every step that depends on the
// host's VMs and every 5 s while the agent runs (bench/run discover says what a look costs):
//   - a new port is put behind the keeper: the keeper connects to the VM's socket and the port's
//     vhost-server-path becomes the keeper's socket for the VM and generation (the one reconnect
//     the VM sees); during an upgrade the target gets the port and the flows as well, so the VM
//     can be moved like the others (and commit waits for it);
//   - a found VM whose port left the DB (the VM was deleted) is let go, on the target too;
//   - a port that cannot be taken is left as it is and reported by name and cause
//     (status.unmanaged, health); commit refuses while one exists, since stopping the
//     generation that serves it would cut it off.
// Every VM found or let go is journalled first (vm-found, vm-gone): derive() replays the host's
// VMs as its config lists them plus those found.
import { existsSync, readlinkSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { UpgradeStatus } from '../../../protocol/agent.js';
import { Mac, Name } from '../../../protocol/names.js';
import { keeper } from '../../../protocol/native/keeper.js';
import { Ovs, type VhostPort } from '../native/ovs.js';
import { kindOf } from './datapath.js';
import type { HostAgent } from './upgrade.js';

export type Unmanaged = UpgradeStatus['unmanaged'][number];

export interface Discovery {
  found: string[];
  gone: string[];
  unmanaged: Unmanaged[];
}

/** Ports that could not be taken, by name, with the Interface row they were put back as: not
 * tried again (each try costs the VM a reconnect) until the cloud plugs the port again (a new
 * row, even alike). Not by what the row says: OVS numbers a port after the cloud's
 * transaction, so a look can see one row unnumbered and then numbered. */
export type Refused = Map<string, { row: string; why: string }>;

/** <root>/run/ovs: the active OVS-DPDK generation's run dir, whichever generation that is. */
export function ovsLink(root: string): string {
  return join(root, 'run', 'ovs');
}

/** Point <root>/run/ovs at dir (atomically: a new link renamed over the old one). */
export function linkActive(root: string, dir: string): void {
  const link = ovsLink(root);
  try {
    if (readlinkSync(link) === dir) return;
  } catch {
    /* none yet */
  }
  const tmp = `${link}.new`;
  rmSync(tmp, { force: true });
  symlinkSync(dir, tmp);
  renameSync(tmp, link);
}

/** Why a port cannot be put behind the keeper (null: it can). */
function unfit(p: VhostPort, keeperSocket: string): string | null {
  const name = Name.safeParse(p.name);
  if (!name.success) return `its name is not one a VM may have (${name.error.issues[0]!.message})`;
  if (p.error) return `OVS refused it: ${p.error}`;
  if (!p.path) return "it has no options:vhost-server-path (the VM's own vhost-user socket)";
  if (p.path === keeperSocket) return "it points at the keeper's socket, but the keeper has no session for it";
  if (!p.mac) return "it has no external_ids:attached-mac (the VM's MAC, announced after every move)";
  if (!Mac.safeParse(p.mac).success) return `its external_ids:attached-mac ${JSON.stringify(p.mac)} is not a MAC address`;
  if (!existsSync(p.path)) return `nothing listens at its vhost-server-path ${p.path} (is the VM running?)`;
  return null;
}

/** The active OVS-DPDK generation's VM ports, or null when the active generation is not one. */
export async function activePorts(h: HostAgent): Promise<{ gen: string; ovs: Ovs; ports: VhostPort[] } | null> {
  const d = h.d;
  if (!d.active || kindOf(h.root, d.active.release) !== 'ovs-dpdk' || !h.sup.genAlive(d.active.gen)) return null;
  const dir = h.sup.genDir(d.active.gen);
  if (!existsSync(join(dir, 'ovs.json'))) return null;
  const ovs = Ovs.at(dir);
  return { gen: d.active.gen, ovs, ports: await ovs.vhostPorts() };
}

export async function discover(h: HostAgent, refused: Refused, light = false): Promise<Discovery> {
  const out: Discovery = { found: [], gone: [], unmanaged: [] };
  const act = await activePorts(h);
  if (!act) return out;
  const d = h.d;
  const { gen, ovs: A, ports } = act;
  linkActive(h.root, A.dir);
  const T =
    d.target && d.mode === 'handoff' && h.sup.genAlive(d.target.gen) && existsSync(join(h.sup.genDir(d.target.gen), 'ovs.json')) ? { gen: d.target.gen, ovs: Ovs.at(h.sup.genDir(d.target.gen)) } : null;
  const socket = (g: string, vm: string) => join(h.sup.genDir(g), 'vhost', `${vm}.sock`);
  const k = await h.sup.keeper();
  const sessions = new Set((await k.request(keeper.sessionList, {})).sessions.map((s) => s.vm));
  const known = new Set(h.vms().map((v) => v.name));
  const inDb = new Set(ports.map((p) => p.name));
  for (const name of refused.keys()) if (!inDb.has(name)) refused.delete(name);

  // a found VM plugged again differently (another socket or MAC): let go, then found anew below
  for (const p of ports) {
    const v = d.found.get(p.name);
    if (!v || p.path === socket(gen, p.name) || (p.path === v.frontend_socket && p.mac?.toLowerCase() === v.mac)) continue;
    h.journal.append({ type: 'vm-gone', vm: p.name, why: 'the cloud plugged it again with another socket or MAC' });
    await k.request(keeper.vmDel, { vm: p.name }).catch(() => undefined);
    sessions.delete(p.name);
    known.delete(p.name);
  }

  for (const p of ports) {
    if (known.has(p.name)) continue;
    const before = refused.get(p.name);
    if (before && before.row === p.row) {
      out.unmanaged.push({ port: p.name, why: before.why });
      continue;
    }
    const why = unfit(p, socket(gen, p.name));
    if (why) {
      out.unmanaged.push({ port: p.name, why });
      continue;
    }
    const mac = Mac.parse(p.mac);
    h.journal.append({ type: 'vm-found', vm: p.name, mac, frontend_socket: p.path!, gen });
    try {
      // OVS lets go of the VM's socket first: a frontend that is the server takes one client
      await A.repoint(p, socket(gen, p.name));
      await k.request(keeper.vmAdd, { vm: p.name, gen, mac, socket: p.path!, client: true });
      sessions.add(p.name);
      out.found.push(p.name);
    } catch (e) {
      // put back as it was: OVS serves the VM directly again, and the operator is told why
      await A.repoint(p, p.path!).catch(() => undefined);
      await k.request(keeper.vmDel, { vm: p.name }).catch(() => undefined);
      const why = `it could not be put behind the keeper: ${(e as Error).message}`;
      h.journal.append({ type: 'vm-gone', vm: p.name, why });
      const back = (await A.vhostPorts()).find((x) => x.name === p.name);
      if (back) refused.set(p.name, { row: back.row, why });
      out.unmanaged.push({ port: p.name, why });
    }
  }

  // found VMs whose port left the DB: deleted by the cloud, let go everywhere
  for (const vm of h.d.found.keys()) {
    if (inDb.has(vm)) continue;
    h.journal.append({ type: 'vm-gone', vm, why: `its port left ${gen}'s OVS DB` });
    await k.request(keeper.vmDel, { vm }).catch(() => undefined);
    if (T) await T.ovs.vsctl('--if-exists', 'del-port', 'br0', vm);
    sessions.delete(vm);
    out.gone.push(vm);
  }
  // sessions of VMs that are no longer the host's (an agent stopped right after letting one go)
  const vms = h.vms();
  for (const s of sessions) if (!vms.some((v) => v.name === s)) await k.request(keeper.vmDel, { vm: s }).catch(() => undefined);

  // a found VM plugged again by the cloud the same way (deleted and added back between two
  // looks: its port leads to its own socket again), or one the keeper does not hold (an agent
  // stopped half-way through taking it): taken again
  for (const v of h.d.found.values()) {
    const p = ports.find((x) => x.name === v.name);
    if (!p || !v.frontend_socket || out.found.includes(v.name)) continue;
    if (p.path !== socket(gen, v.name)) await A.repoint(p, socket(gen, v.name));
    if (!sessions.has(v.name)) await k.request(keeper.vmAdd, { vm: v.name, gen, mac: v.mac, socket: v.frontend_socket, client: true });
  }

  // the target of an upgrade under way serves every VM the active one does (its port copied),
  // none it does not, with the active one's meters, groups and flows (the controller's changes
  // to them during the upgrade included; compared in every look but the light periodic one,
  // so always before a switch or a commit)
  if (T) {
    const there = (await T.ovs.vhostPorts()).map((p) => p.name);
    for (const name of there) if (!vms.some((v) => v.name === name)) await T.ovs.vsctl('--if-exists', 'del-port', 'br0', name);
    for (const p of ports) if (!there.includes(p.name) && vms.some((v) => v.name === p.name)) await T.ovs.addVhostLike(p, socket(T.gen, p.name));
    const st = light ? null : await A.exportState();
    if (st && JSON.stringify(await T.ovs.exportState()) !== JSON.stringify(st)) await T.ovs.importState(st);
  }
  return out;
}
