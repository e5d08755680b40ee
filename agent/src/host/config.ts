// The host's configuration (<root>/etc/agent.json) and its releases (<root>/releases/<version>).
// The VM inventory sits behind an interface so libvirt discovery can replace the file later.
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentConfig, DatapathKind, ReleaseManifest, type VmEntry } from '../../../protocol/files.js';
import { Version } from '../../../protocol/names.js';

export interface VmInventory {
  list(): VmEntry[];
}

/** Read and check <root>/etc/agent.json; the error names the file and the field. */
export function loadConfig(root: string): AgentConfig {
  const path = join(root, 'etc', 'agent.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  const r = AgentConfig.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new Error(`${path}: ${i.path.join('.') || '(top)'}: ${i.message}`);
  }
  return r.data;
}

export class ConfigInventory implements VmInventory {
  constructor(private readonly cfg: AgentConfig) {}
  list(): VmEntry[] {
    return this.cfg.vms;
  }
}

/** A release's manifest, or why it has none usable (the release is then handoff-only). */
export function readManifest(root: string, version: string): { manifest: ReleaseManifest | null; error?: string; unknown_kind?: true } {
  const path = join(root, 'releases', version, 'release.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    return { manifest: null, error: `${path}: ${(e as Error).message}` };
  }
  const kind = (raw as { kind?: unknown } | null)?.kind;
  if (kind !== undefined && !DatapathKind.safeParse(kind).success)
    return { manifest: null, unknown_kind: true, error: `${path}: kind: unknown datapath kind ${JSON.stringify(kind)} (this agent runs ${DatapathKind.options.join(', ')})` };
  const r = ReleaseManifest.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    return { manifest: null, error: `${path}: ${i.path.join('.') || '(top)'}: ${i.message}` };
  }
  if (r.data.release !== version) return { manifest: null, error: `${path}: says release ${r.data.release}, installed as ${version}` };
  return { manifest: r.data };
}

/** The stage a release ships. */
export function stagePath(root: string, version: string): string {
  return join(root, 'releases', version, 'bin', 'hitless-fwd-l2.so');
}

/** Installed releases: <root>/releases/<version>/ with release.json and the binaries of its
 * kind: bin/{hitless-dp,hitless-fwd-l2.so} (hitless-dp, also when it has no manifest) or
 * bin/ovs-vswitchd (ovs-dpdk). */
export function listReleases(root: string): { version: string; path: string; manifest: ReleaseManifest | null; manifest_error?: string; unknown_kind?: true }[] {
  let names: string[] = [];
  try {
    names = readdirSync(join(root, 'releases'));
  } catch {
    return [];
  }
  return names
    .filter((v) => Version.safeParse(v).success)
    .sort()
    .map((version) => {
      const m = readManifest(root, version);
      return { version, path: join(root, 'releases', version), manifest: m.manifest, ...(m.error ? { manifest_error: m.error } : {}), ...(m.unknown_kind ? { unknown_kind: m.unknown_kind } : {}) };
    })
    // one of a kind this agent does not know stays listed, so that its error is seen
    .filter((r) => r.unknown_kind || releaseComplete(r.path, r.manifest?.kind ?? 'hitless-dp'));
}

function releaseComplete(dir: string, kind: DatapathKind): boolean {
  const need: [string, number][] =
    kind === 'ovs-dpdk'
      ? [['ovs-vswitchd', constants.X_OK]]
      : [
          ['hitless-dp', constants.X_OK],
          ['hitless-fwd-l2.so', constants.R_OK],
        ];
  try {
    for (const [f, mode] of need) accessSync(join(dir, 'bin', f), mode);
    return true;
  } catch {
    return false;
  }
}
