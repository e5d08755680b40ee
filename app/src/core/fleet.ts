// The console's fleet: which hosts it manages and how to reach each one's agent, kept in the
// console's state directory (fleet.json). Hosts come from an ssh config (its Host blocks), an
// Ansible inventory (INI or YAML: groups become the rack/pair a wave never doubles up on), the
// lab's fleet file, or by hand. Every file read is validated; a bad entry is skipped with the
// reason, never silently.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import SSHConfig from 'ssh-config';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { Fleet as FleetFile } from '../../../protocol/files.js';
import { describeZodError } from '../../../protocol/rpc.js';
import { HostEntry } from '../../../protocol/console.js';
import { HostName } from '../../../protocol/names.js';

export interface Imported {
  hosts: HostEntry[];
  skipped: { name: string; why: string }[];
}

const StoreFile = z.object({ version: z.literal(1), hosts: z.array(HostEntry) });

export class FleetStore {
  private hosts: HostEntry[] = [];

  constructor(readonly path: string) {
    if (!existsSync(path)) return;
    const raw = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    const f = StoreFile.safeParse(raw);
    if (!f.success) throw new Error(describeZodError(path, f.error));
    this.hosts = f.data.hosts;
  }

  list(): HostEntry[] {
    return [...this.hosts];
  }

  get(name: string): HostEntry | undefined {
    return this.hosts.find((h) => h.name === name);
  }

  private save(): void {
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ version: 1, hosts: this.hosts }, null, 2)}\n`);
    renameSync(tmp, this.path);
  }

  add(h: HostEntry): void {
    if (this.get(h.name)) throw new Error(`fleet/add: name: a host named ${h.name} is already in the fleet`);
    this.hosts.push(h);
    this.save();
  }

  /** Add what is new. A name already present is reported, not overwritten — unless both come
   * from the same fleet file's kind (the file is the authority for the hosts it defines: a lab
   * rebuilt elsewhere), and may(name) allows it (a host in a running campaign is not touched). */
  merge(im: Imported, may: (name: string) => string | null = () => null): { added: string[]; updated: string[]; skipped: { name: string; why: string }[] } {
    const added: string[] = [];
    const updated: string[] = [];
    const skipped = [...im.skipped];
    for (const h of im.hosts) {
      const old = this.get(h.name);
      if (!old) {
        this.hosts.push(h);
        added.push(h.name);
      } else if (old.source !== 'fleet-file' || h.source !== 'fleet-file') skipped.push({ name: h.name, why: 'already in the fleet' });
      else if (JSON.stringify(old) === JSON.stringify(h)) skipped.push({ name: h.name, why: 'already in the fleet, unchanged' });
      else {
        const busy = may(h.name);
        if (busy) skipped.push({ name: h.name, why: busy });
        else {
          this.hosts[this.hosts.indexOf(old)] = h;
          updated.push(h.name);
        }
      }
    }
    if (added.length || updated.length) this.save();
    return { added, updated, skipped };
  }

  remove(name: string): void {
    const n = this.hosts.length;
    this.hosts = this.hosts.filter((h) => h.name !== name);
    if (this.hosts.length === n) throw new Error(`fleet/remove: name: no host ${name} in the fleet`);
    this.save();
  }
}

function entry(raw: Omit<z.input<typeof HostEntry>, 'source'>, source: HostEntry['source'], out: Imported): void {
  const p = HostEntry.safeParse({ ...raw, source });
  if (p.success) out.hosts.push(p.data);
  else out.skipped.push({ name: raw.name, why: describeZodError(raw.name, p.error) });
}

/** Every concrete Host alias of an ssh config (patterns like * or ? are not hosts). */
export function fromSshConfig(path: string | null, agentCommand: string): Imported {
  const file = path ?? join(homedir(), '.ssh', 'config');
  const text = readFileSync(file, 'utf8');
  const out: Imported = { hosts: [], skipped: [] };
  for (const line of SSHConfig.parse(text)) {
    if (line.type !== SSHConfig.DIRECTIVE || line.param.toLowerCase() !== 'host') continue;
    const names = (Array.isArray(line.value) ? line.value.map((v) => (typeof v === 'string' ? v : v.val)) : String(line.value).split(/\s+/)).filter((n) => n !== '');
    for (const n of names) {
      if (/[*?!]/.test(n)) continue;
      entry({ name: n, ssh: { alias: n, config: file }, agent_command: agentCommand, group: null }, 'ssh-config', out);
    }
  }
  return out;
}

interface AnsibleHost {
  name: string;
  vars: Record<string, string>;
  groups: string[];
}

function ansibleEntry(h: AnsibleHost, agentCommand: string, out: Imported): void {
  const v = h.vars;
  const port = Number(v.ansible_port ?? v.ansible_ssh_port ?? 22);
  entry(
    {
      name: h.name,
      ssh: { host: v.ansible_host ?? v.ansible_ssh_host ?? h.name, port, user: v.ansible_user ?? v.ansible_ssh_user ?? 'root', identity: v.ansible_ssh_private_key_file ?? null },
      agent_command: v.hitless_agent ?? agentCommand,
      // the rack or pair: an explicit hitless_group, else the first group that is not 'all'/'ungrouped'
      group: v.hitless_group ?? h.groups.find((g) => g !== 'all' && g !== 'ungrouped') ?? null,
    },
    'ansible',
    out,
  );
}

/** An Ansible inventory, INI (the default format) or YAML. Group vars apply to their hosts. */
export function fromAnsible(path: string, agentCommand: string): Imported {
  const text = readFileSync(path, 'utf8');
  const hosts = new Map<string, AnsibleHost>();
  const host = (name: string) => hosts.get(name) ?? (hosts.set(name, { name, vars: {}, groups: [] }), hosts.get(name)!);
  const groupVars = new Map<string, Record<string, string>>();
  const kv = (s: string): Record<string, string> => Object.fromEntries([...s.matchAll(/(\w+)=("[^"]*"|'[^']*'|\S+)/g)].map((m) => [m[1]!, m[2]!.replace(/^["']|["']$/g, '')]));
  const out: Imported = { hosts: [], skipped: [] };
  const yamlLike = /^\s*all\s*:/m.test(text) || /\.ya?ml$/.test(path);
  if (yamlLike) {
    const walk = (gname: string, g: unknown, inherited: Record<string, string>) => {
      if (!g || typeof g !== 'object') return;
      const o = g as { hosts?: Record<string, Record<string, unknown> | null>; vars?: Record<string, unknown>; children?: Record<string, unknown> };
      const vars = { ...inherited, ...Object.fromEntries(Object.entries(o.vars ?? {}).map(([k, x]) => [k, String(x)])) };
      for (const [n, hv] of Object.entries(o.hosts ?? {})) {
        const h = host(n);
        h.groups.push(gname);
        h.vars = { ...vars, ...h.vars, ...Object.fromEntries(Object.entries(hv ?? {}).map(([k, x]) => [k, String(x)])) };
      }
      for (const [c, cg] of Object.entries(o.children ?? {})) walk(c, cg, vars);
    };
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      throw new Error(`${path}: not a YAML inventory: ${(e as Error).message}`);
    }
    for (const [g, body] of Object.entries((doc ?? {}) as Record<string, unknown>)) walk(g, body, {});
  } else {
    let section = 'ungrouped';
    let kind: 'hosts' | 'vars' | 'children' = 'hosts';
    const children = new Map<string, string[]>();
    text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/[#;].*$/, '').trim();
      if (!line) return;
      const sec = /^\[([^\]:]+)(?::(vars|children))?\]$/.exec(line);
      if (sec) {
        section = sec[1]!;
        kind = (sec[2] as 'vars' | 'children' | undefined) ?? 'hosts';
        return;
      }
      if (kind === 'vars') groupVars.set(section, { ...groupVars.get(section), ...kv(line) });
      else if (kind === 'children') children.set(section, [...(children.get(section) ?? []), line.split(/\s+/)[0]!]);
      else {
        const [name, ...rest] = line.split(/\s+/);
        if (!name || /[[\]]/.test(name)) return void out.skipped.push({ name: name ?? `line ${i + 1}`, why: `${path}:${i + 1}: host ranges are not supported` });
        const h = host(name);
        h.groups.push(section);
        h.vars = { ...h.vars, ...kv(rest.join(' ')) };
      }
    });
    // group vars (a child group inherits its parents'); host vars win
    const parentsOf = (g: string) => [...children].filter(([, cs]) => cs.includes(g)).map(([p]) => p);
    const varsOf = (g: string, seen = new Set<string>()): Record<string, string> => {
      if (seen.has(g)) return {};
      seen.add(g);
      return Object.assign({}, ...parentsOf(g).map((p) => varsOf(p, seen)), groupVars.get('all'), groupVars.get(g));
    };
    for (const h of hosts.values()) h.vars = { ...Object.assign({}, ...h.groups.map((g) => varsOf(g))), ...h.vars };
  }
  for (const h of hosts.values()) ansibleEntry(h, agentCommand, out);
  return out;
}

/** A fleet file (the lab's fleet.json): hosts reached through its ssh config and pinned known_hosts. */
export function fromLabFleet(path: string): Imported {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as unknown;
  const f = FleetFile.safeParse(raw);
  if (!f.success) throw new Error(describeZodError(path, f.error));
  const out: Imported = { hosts: [], skipped: [] };
  for (const h of f.data.hosts) entry({ name: h.name, ssh: { alias: h.name, config: f.data.ssh_config }, agent_command: `${h.agent} --stdio`, group: null, host_package: h.package_dir ? { method: 'unpack', dir: h.package_dir } : { method: 'dpkg' } }, 'fleet-file', out);
  return out;
}

export const isHostName = (s: string) => HostName.safeParse(s).success;
