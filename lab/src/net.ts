// The lab's network: a fabric bridge in the root namespace and, per host, a namespace with a
// management veth (the host's SSH address) and two uplink veths (up0 for generation A, up1 for
// B), all plugged into the bridge. IPv6 is off on every lab link. Each step checks what is
// already there, so bringing the network up twice changes nothing.
import { writeFileSync } from 'node:fs';
import { bridgeName, consoleAddress, hostLayout, NS_MGMT, UPLINKS, type LabSpec } from './fleet.js';
import { inNs, ip, killPids, LabError, linkNames, netnsList, run, sleep, tryRun } from './sys.js';

function disableIpv6(ifname: string): void {
  writeFileSync(`/proc/sys/net/ipv6/conf/${ifname}/disable_ipv6`, '1');
}

async function ensureBridge(spec: LabSpec, links: string[]): Promise<void> {
  const br = bridgeName(spec.prefix);
  if (!links.includes(br)) {
    await ip('link', 'add', br, 'type', 'bridge');
    disableIpv6(br);
  }
  const addr = `${consoleAddress(spec.subnet)}/24`;
  const users = (await ip('-o', '-4', 'addr', 'show', 'to', `198.18.${spec.subnet}.0/24`)).split('\n').filter(Boolean).map((l) => l.split(/\s+/)[1]);
  const other = users.find((ifname) => ifname !== br);
  if (other) throw new LabError(`198.18.${spec.subnet}.0/24 is already in use on ${other} (another lab?): choose another --subnet`);
  const shown = await ip('-o', '-4', 'addr', 'show', 'dev', br);
  if (!shown.includes(` ${addr} `)) await ip('addr', 'add', addr, 'dev', br);
  await ip('link', 'set', br, 'up');
}

/** A veth whose root end `outer` is enslaved to the bridge and whose other end is `inner` in ns. */
async function ensureVeth(ns: string, outer: string, inner: string, br: string, links: string[]): Promise<void> {
  if (!links.includes(outer)) {
    await ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', inner, 'netns', ns);
    disableIpv6(outer);
  }
  await ip('link', 'set', outer, 'master', br, 'up');
  await inNs(ns, ['ip', 'link', 'set', inner, 'up']);
}

async function ensureHost(spec: LabSpec, i: number, namespaces: string[], links: string[]): Promise<void> {
  const h = hostLayout(spec, i);
  const br = bridgeName(spec.prefix);
  if (!namespaces.includes(h.netns)) {
    await ip('netns', 'add', h.netns);
    // Set before any link moves in: new interfaces take the namespace's defaults.
    await inNs(h.netns, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  }
  await inNs(h.netns, ['ip', 'link', 'set', 'lo', 'up']);
  // ARP answered only on the interface that has the address (mgmt0): by default Linux answers
  // for it on the uplinks too (they share the fabric), and an uplink handed to an OVS-DPDK
  // generation's namespace then takes the host's SSH traffic with it
  await inNs(h.netns, ['sysctl', '-q', '-w', 'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2']);
  await ensureVeth(h.netns, h.veths.mgmt, NS_MGMT, br, links);
  await ensureVeth(h.netns, h.veths.up0, UPLINKS[0], br, links);
  await ensureVeth(h.netns, h.veths.up1, UPLINKS[1], br, links);
  const addr = `${h.address}/24`;
  const shown = await inNs(h.netns, ['ip', '-o', '-4', 'addr', 'show', 'dev', NS_MGMT]);
  if (!shown.includes(` ${addr} `)) await inNs(h.netns, ['ip', 'addr', 'add', addr, 'dev', NS_MGMT]);
}

export async function networkUp(spec: LabSpec): Promise<void> {
  const links = await linkNames();
  const namespaces = await netnsList();
  await ensureBridge(spec, links);
  for (let i = 1; i <= spec.hosts; i++) await ensureHost(spec, i, namespaces, links);
}

/** Everything named with this prefix, whether or not a lab directory still describes it. */
export async function labResources(prefix: string): Promise<{ namespaces: string[]; links: string[] }> {
  const nsRe = new RegExp(`^${prefix}-h[0-9]+$`);
  const linkRe = new RegExp(`^(${prefix}h[0-9]+-(m|u0|u1)|${prefix}fab0)$`);
  return {
    namespaces: (await netnsList()).filter((n) => nsRe.test(n)),
    links: (await linkNames()).filter((l) => linkRe.test(l)),
  };
}

/** Processes whose network namespace is ns. */
export async function netnsPids(ns: string): Promise<number[]> {
  const r = await tryRun('ip', ['netns', 'pids', ns]);
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

/**
 * Stops every process in the lab's namespaces (seen is shown each before it is stopped), then removes the namespaces, the root ends of the
 * veths and the bridge. Works on a half-built or already removed lab.
 */
export async function networkDown(prefix: string, seen: (pid: number) => void = () => undefined): Promise<{ namespaces: number; links: number; killed: number }> {
  const { namespaces } = await labResources(prefix);
  let killed = 0;
  for (const ns of namespaces) {
    const pids = await netnsPids(ns);
    pids.forEach(seen);
    killed += pids.length;
    await killPids(pids);
    await ip('netns', 'del', ns);
  }
  // Deleting a namespace takes its veth ends (and so their peers) with it; remove what is left.
  // The kernel dismantles a namespace asynchronously, so wait for the links to go.
  let { links } = await labResources(prefix);
  const removed = links.length;
  for (let tries = 0; links.length > 0 && tries < 40; tries++) {
    for (const l of links) await run('ip', ['link', 'del', l]).catch(() => undefined);
    ({ links } = await labResources(prefix));
    if (links.length > 0) await sleep(50);
  }
  if (links.length > 0) throw new LabError(`could not remove links: ${links.join(', ')}`);
  return { namespaces: namespaces.length, links: removed, killed };
}
