// lab up | status | down — a fleet of lab hosts on this machine. Flags are parsed here; the
// work is in lab.ts. Exit codes: 0 done, 1 failed, 2 bad arguments.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DATAPATHS, LabSpec, MAX_HOSTS, MAX_VMS, VM_KINDS } from './fleet.js';
import { DEFAULT_BUILD_DIR, DEFAULT_DIR, DEFAULT_PREFIX, down, healthy, status, statusTable, unhealthy, up } from './lab.js';
import { DEFAULT_PPS } from './run.js';
import { LabError } from './sys.js';

const USAGE = `usage:
  lab up --hosts N --vms M [--vm-kind K] [--datapath D] [--pps R] [--dir DIR] [--prefix P] [--subnet K] [--build-dir B]
  lab status [--dir DIR] [--json]
  lab down [--dir DIR] [--prefix P]

  --hosts N      lab hosts h1..hN (1..${MAX_HOSTS})
  --vms M        VMs per host (1..${MAX_VMS})
  --vm-kind K    ${VM_KINDS.join('|')}: probe VMs (virtio_user) only (default), or QEMU guests
                 (TCG, Linux virtio-net) measured through by the probe VMs: mixed makes the
                 last VM of each host a guest, qemu all but the first (needs --vms 2 or more)
  --datapath D   ${DATAPATHS.join('|')}: what runs the hosts' generations: hitless-dp (default),
                 stock OVS-DPDK (Debian's ovs-vswitchd-dpdk; 2 MB hugepages reserved per
                 generation and given back), or mixed (the even hosts OVS-DPDK)
  --pps R        frames/s of each probe flow (default ${DEFAULT_PPS}; a running probe keeps its rate)
  --dir DIR      lab directory (default ${DEFAULT_DIR}); down removes it
  --prefix P     names of the bridge (Pfab0), namespaces (P-h<i>) and veths (default ${DEFAULT_PREFIX})
  --subnet K     host i is 198.18.K.i, this machine 198.18.K.254 (default 0)
  --build-dir B  meson trees of the releases, kept by down (default ${DEFAULT_BUILD_DIR})`;

class UsageError extends Error {}

function int(name: string, value: string | undefined, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) throw new UsageError(`--${name} is required`);
    return fallback;
  }
  if (!/^[0-9]+$/.test(value)) throw new UsageError(`--${name}: "${value}" is not a whole number`);
  return Number(value);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help') {
    console.log(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  const { values } = parseArgs({
    args: rest,
    strict: true,
    options: {
      hosts: { type: 'string' },
      vms: { type: 'string' },
      'vm-kind': { type: 'string' },
      datapath: { type: 'string' },
      pps: { type: 'string' },
      dir: { type: 'string', default: DEFAULT_DIR },
      prefix: { type: 'string' },
      subnet: { type: 'string' },
      'build-dir': { type: 'string', default: DEFAULT_BUILD_DIR },
      json: { type: 'boolean', default: false },
    },
  });
  const cwd = process.env.HITLESS_LAB_CWD ?? process.cwd();
  const dir = resolve(cwd, values.dir);
  const allowed: Record<string, string[]> = {
    up: ['hosts', 'vms', 'vm-kind', 'datapath', 'pps', 'dir', 'prefix', 'subnet', 'build-dir'],
    status: ['dir', 'json'],
    down: ['dir', 'prefix'],
  };
  if (!allowed[cmd]) throw new UsageError(`unknown command "${cmd}"`);
  for (const k of Object.keys(values)) {
    const given = rest.some((a) => a === `--${k}` || a.startsWith(`--${k}=`));
    if (given && !allowed[cmd].includes(k)) throw new UsageError(`${cmd} takes no --${k}`);
  }

  if (cmd === 'up') {
    const parsed = LabSpec.safeParse({
      prefix: values.prefix ?? DEFAULT_PREFIX,
      subnet: int('subnet', values.subnet, 0),
      hosts: int('hosts', values.hosts),
      vms: int('vms', values.vms),
      vm_kind: values['vm-kind'],
      datapath: values.datapath,
    });
    if (!parsed.success) {
      const i = parsed.error.issues[0]!;
      throw new UsageError(`--${i.path.join('.').replace('_', '-')}: ${i.message}`);
    }
    const pps = int('pps', values.pps, DEFAULT_PPS);
    if (pps < 1 || pps > 100_000) throw new UsageError('--pps: must be 1..100000');
    const { fleet, hosts } = await up({ dir, buildDir: resolve(cwd, values['build-dir']), spec: parsed.data, pps });
    console.log(statusTable(hosts));
    console.log(`fleet: ${dir}/fleet.json   ssh: ssh -F ${fleet.ssh_config} h1`);
    return 0;
  }
  if (cmd === 'status') {
    const hosts = await status(dir);
    console.log(values.json ? JSON.stringify({ dir, hosts }, null, 2) : statusTable(hosts));
    for (const h of hosts) if (!healthy(h)) console.error(`${h.name}: ${unhealthy(h).join('; ')}`);
    return hosts.every(healthy) ? 0 : 1;
  }
  await down({ dir, prefix: values.prefix });
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`lab: ${(err as Error).message}\n${USAGE}`);
      process.exit(2);
    }
    console.error(`lab: ${err instanceof LabError ? err.message : (err as Error).stack}`);
    process.exit(1);
  },
);
