// The command lines of the native processes the agent starts: a datapath generation
// (hitless-dp) with its EAL arguments. One place knows them; the test bed uses it too.

/**
 * DPDK 22.11's af_packet PMD names its PACKET_FANOUT group getpid() ^ ifindex (16 bits), and
 * the kernel refuses to join a group bound to another device. Two generations on two uplinks of
 * one namespace clash when, for instance, their pids and ifindexes are consecutive from an even
 * pair. The start-up fails cleanly; a new process has another pid, so starting again resolves it.
 */
export const FANOUT_ATTEMPTS = 4;
export const fanoutClash = (startupOutput: string): boolean => /could not set PACKET_FANOUT/.test(startupOutput);

/**
 * EAL arguments: 4 KB pages (--no-huge) unless a hugetlbfs mount is given (benchmarks). No
 * shared config (--no-shconf): DPDK otherwise keeps its memory configuration in mmap'd files
 * under /var/run/dpdk, which every rte_malloc writes, and a write to a file page under
 * writeback waits for the disk — inside a handoff, hundreds of milliseconds on a busy host.
 * Nothing here uses DPDK's secondary processes, which is all those files are for.
 */
export function eal(lcore: number, memMb: number, prefix: string, hugeDir?: string): string[] {
  return ['-l', String(lcore), ...(hugeDir ? [`--huge-dir=${hugeDir}`] : ['--no-huge']), '--no-shconf', '-m', String(memMb), '--no-pci', `--file-prefix=${prefix}`, '--log-level=error'];
}

export interface DpOptions {
  genId: string;
  runDir: string;
  /** EAL --file-prefix (default hl-dp-<genId>): distinct per running generation */
  filePrefix?: string;
  lcore?: number;
  memMb?: number;
  uplink?: string;
  /** memif peer link to the host's other generation: the older one is the server */
  peer?: { socket: string; server: boolean };
  bin?: string;
  extraArgs?: string[];
  /** a hugetlbfs mount to take memory from instead of 4 KB pages */
  hugeDir?: string;
}

/** hitless-dp's command line (after the binary) for one generation. */
export function dpArgs(opts: DpOptions): string[] {
  return [
    ...eal(opts.lcore ?? 1, opts.memMb ?? 256, opts.filePrefix ?? `hl-dp-${opts.genId}`, opts.hugeDir),
    '--',
    '--gen-id', opts.genId,
    '--run-dir', opts.runDir,
    ...(opts.uplink ? ['--uplink', opts.uplink] : []),
    ...(opts.peer ? ['--peer', `${opts.peer.socket},${opts.peer.server ? 'server' : 'client'}`] : []),
    ...(opts.extraArgs ?? []),
  ];
}

