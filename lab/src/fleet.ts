// The lab's layout: names, addresses and paths of its hosts. The files it hands to the rest of
// Hitless (the fleet file DIR/fleet.json, each host's etc/agent.json) have their schemas in
// protocol/files.ts. Pure logic: no node imports.
import { z } from 'zod';
import type { DatapathKind, VmEntry } from '../../protocol/files.js';

export const MAX_HOSTS = 8;
export const MAX_VMS = 16;

/** What `lab up` was asked for; DIR/lab.json records it with the state the lab reached. */
export const LabSpec = z.object({
  prefix: z.string().regex(/^[a-z][a-z0-9]{0,7}$/, '1-8 lower-case letters/digits, starting with a letter'),
  subnet: z.number().int().min(0, 'must be 0..255').max(255, 'must be 0..255'),
  hosts: z.number().int().min(1, `must be 1..${MAX_HOSTS}`).max(MAX_HOSTS, `must be 1..${MAX_HOSTS}`),
  vms: z.number().int().min(1, `must be 1..${MAX_VMS}`).max(MAX_VMS, `must be 1..${MAX_VMS}`),
  /** what the VMs are: probe VMs (virtio_user), or QEMU guests beside at least one probe VM
   * that measures them (mixed: the last VM of each host; qemu: all but the first) */
  vm_kind: z.enum(['probe', 'mixed', 'qemu']).default('probe'),
  /** what runs the hosts' generations: hitless-dp, stock OVS-DPDK, or both (mixed: the even
   * hosts OVS-DPDK) */
  datapath: z.enum(['hitless', 'ovs', 'mixed']).default('hitless'),
});
export type LabSpec = z.infer<typeof LabSpec>;
export const VM_KINDS = LabSpec.shape.vm_kind.removeDefault().options;
export const DATAPATHS = LabSpec.shape.datapath.removeDefault().options;

/** The datapath kind of host i's releases. */
export function hostKind(spec: Pick<LabSpec, 'datapath'>, i: number): DatapathKind {
  return spec.datapath === 'ovs' || (spec.datapath === 'mixed' && i % 2 === 0) ? 'ovs-dpdk' : 'hitless-dp';
}

/** Whether VM k (1-based) of a host is a QEMU guest. */
export function isGuest(spec: Pick<LabSpec, 'vms' | 'vm_kind'>, k: number): boolean {
  if (spec.vms < 2) return false; // a host's only VM is the probe VM that measures
  return spec.vm_kind === 'qemu' ? k >= 2 : spec.vm_kind === 'mixed' && k === spec.vms;
}

export const LabState = LabSpec.extend({ state: z.enum(['building', 'up']) });
export type LabState = z.infer<typeof LabState>;

const hex2 = (n: number) => n.toString(16).padStart(2, '0');

/** Names and addresses of one host; interface names stay within Linux's 15 characters. */
export function hostLayout(spec: Pick<LabSpec, 'prefix' | 'subnet'>, i: number) {
  const name = `h${i}`;
  return {
    name,
    netns: `${spec.prefix}-${name}`,
    address: `198.18.${spec.subnet}.${i}`,
    /** Root-namespace ends of the veths, enslaved to the fabric bridge. */
    veths: { mgmt: `${spec.prefix}${name}-m`, up0: `${spec.prefix}${name}-u0`, up1: `${spec.prefix}${name}-u1` },
  };
}

export function bridgeName(prefix: string): string {
  return `${prefix}fab0`;
}

/** The root namespace's own address on the fabric, so SSH works from the console side. */
export function consoleAddress(subnet: number): string {
  return `198.18.${subnet}.254`;
}

export function hostVms(i: number, count: number): VmEntry[] {
  return Array.from({ length: count }, (_, k) => ({ name: `h${i}-v${k + 1}`, mac: `02:00:00:${hex2(i)}:00:${hex2(k + 1)}` }));
}

/** Interface names inside each host namespace. */
export const NS_MGMT = 'mgmt0';
export const UPLINKS = ['up0', 'up1'] as const;

/** Where everything lives under the lab directory. */
export function labPaths(dir: string) {
  const client = `${dir}/client`;
  return {
    state: `${dir}/lab.json`,
    fleet: `${dir}/fleet.json`,
    client,
    identity: `${client}/id_ed25519`,
    authorizedKeys: `${client}/authorized_keys`,
    knownHosts: `${client}/known_hosts`,
    sshConfig: `${client}/ssh_config`,
    host(name: string) {
      const base = `${dir}/hosts/${name}`;
      return {
        base,
        hostKey: `${base}/ssh/ssh_host_ed25519_key`,
        sshdConfig: `${base}/ssh/sshd_config`,
        sshdPid: `${base}/sshd.pid`,
        sshdLog: `${base}/sshd.log`,
        root: `${base}/root`,
      };
    },
  };
}
export type LabPaths = ReturnType<typeof labPaths>;
