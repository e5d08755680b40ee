// Lab VMs that are real QEMU guests (DESIGN §11): Debian's qemu-system-x86 under TCG, Debian's
// cloud kernel and an initramfs built here from busybox-static, the kernel's virtio modules and
// hitless-guest (which reflects every frame sent to it). The guest's serial console carries
// its JSON events (protocol/native/guest.ts) and takes its commands.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { GuestEvent, isKernelWarning, type GuestCommand } from '../../protocol/native/guest.js';
import { LabError, run } from './sys.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** where scripts/setup.sh unpacks the guest kernel and its virtio modules */
export const GUEST_CACHE = '/var/cache/hitless-guest';
const QEMU = '/usr/bin/qemu-system-x86_64';
const BUSYBOX = '/bin/busybox';
/** the virtio network stack in load order; the last is the driver a reload replaces */
const MODULES = ['virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'failover', 'net_failover', 'virtio_net'];

/** Why QEMU guests cannot run here, or null when they can. */
export function guestsUnavailable(): string | null {
  for (const [path, from] of [
    [QEMU, 'qemu-system-x86'],
    [BUSYBOX, 'busybox-static'],
    [join(GUEST_CACHE, 'vmlinuz'), 'the guest kernel'],
  ] as const)
    if (!existsSync(path)) return `${path} is missing (${from}: run scripts/setup.sh)`;
  return null;
}

/** The kernel and initramfs of a lab guest; the initramfs is rebuilt when an input changed. */
export async function guestImage(buildDir = join(repoRoot, 'native/build')): Promise<{ kernel: string; initrd: string }> {
  const why = guestsUnavailable();
  if (why) throw new LabError(`QEMU guests: ${why}`);
  const guestBin = join(buildDir, 'src/guest/hitless-guest');
  const init = join(repoRoot, 'native/src/guest/init');
  if (!existsSync(guestBin)) throw new LabError(`${guestBin} is missing: build first (make native)`);
  const modules = MODULES.map((m) => {
    const f = readdirSync(join(GUEST_CACHE, 'modules')).find((n) => n === `${m}.ko`);
    if (!f) throw new LabError(`${GUEST_CACHE}/modules has no ${m}.ko: run scripts/setup.sh`);
    return join(GUEST_CACHE, 'modules', f);
  });
  const initrd = join(buildDir, 'guest-initramfs.cpio.gz');
  const inputs = [guestBin, init, BUSYBOX, ...modules, fileURLToPath(import.meta.url) /* MODULES */];
  if (existsSync(initrd) && inputs.every((f) => statSync(f).mtimeMs <= statSync(initrd).mtimeMs)) return { kernel: join(GUEST_CACHE, 'vmlinuz'), initrd };
  const stage = mkdtempSync(join(buildDir, 'guest-stage-'));
  try {
    for (const d of ['bin', 'lib/modules', 'etc']) mkdirSync(join(stage, d), { recursive: true });
    copyFileSync(BUSYBOX, join(stage, 'bin/busybox'));
    copyFileSync(guestBin, join(stage, 'bin/hitless-guest'));
    copyFileSync(init, join(stage, 'init'));
    for (const m of modules) copyFileSync(m, join(stage, 'lib/modules', m.split('/').pop()!));
    writeFileSync(join(stage, 'etc/hitless-modules'), MODULES.join(' ') + '\n');
    await run('chmod', ['0755', join(stage, 'init'), join(stage, 'bin/busybox'), join(stage, 'bin/hitless-guest')]);
    const tmp = `${initrd}.tmp`;
    await run('sh', ['-c', `cd "$1" && find . | cpio -o -H newc --quiet | gzip -1 > "$2"`, 'sh', stage, tmp]);
    await run('mv', [tmp, initrd]);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  return { kernel: join(GUEST_CACHE, 'vmlinuz'), initrd };
}

export interface GuestOptions {
  name: string;
  mac: string;
  /** the VM's vhost-user socket */
  socket: string;
  /** QEMU is the vhost-user server (server=on, as OpenStack/libvirt lay it out); otherwise it
   * connects to the keeper's socket */
  server: boolean;
  /** queue pairs (one vCPU each) */
  queues?: number;
  memMb?: number;
}

/** QEMU's command line for a lab guest; its serial console is stdio (events and commands) or
 * a file (a guest that runs detached, as in the lab fleet). */
export function qemuCommand(opts: GuestOptions, img: { kernel: string; initrd: string }, console: 'stdio' | { file: string }): string[] {
  const q = opts.queues ?? 1;
  const mem = opts.memMb ?? 256;
  return [
    QEMU, '-name', opts.name, '-nodefaults', '-no-user-config', '-display', 'none', '-machine', 'pc,accel=tcg',
    '-m', String(mem), '-smp', String(q),
    '-object', `memory-backend-memfd,id=mem,size=${mem}M,share=on`, '-numa', 'node,memdev=mem',
    '-kernel', img.kernel, '-initrd', img.initrd, '-append', 'console=ttyS0 loglevel=1 panic=0',
    '-chardev', `socket,id=vu,path=${opts.socket}${opts.server ? ',server=on,wait=off' : ''}`,
    '-netdev', `vhost-user,id=net0,chardev=vu${q > 1 ? `,queues=${q}` : ''}`,
    // vectors=0: QEMU 7.2 under TCG faults with MSI-X on a vhost-user device
    '-device', `virtio-net-pci,netdev=net0,mac=${opts.mac},vectors=0${q > 1 ? ',mq=on' : ''}`,
    '-chardev', console === 'stdio' ? 'stdio,id=con,signal=off' : `file,id=con,path=${console.file}`, '-serial', 'chardev:con',
  ];
}

/** A running QEMU guest: its events as they arrive and its console commands. */
export class QemuGuest {
  readonly events: GuestEvent[] = [];
  /** console lines that are not events (early boot, panics) and QEMU's stderr, for errors */
  log = '';
  private waiters: { pred: (e: GuestEvent) => boolean; resolve: (e: GuestEvent) => void }[] = [];

  private constructor(
    readonly child: ChildProcess,
    readonly opts: GuestOptions,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        this.keepLog(`${line}\n`);
        return;
      }
      const ev = GuestEvent.safeParse(parsed);
      if (!ev.success) return this.keepLog(`${line}\n`);
      if (ev.data.event === 'error') this.keepLog(`hitless-guest: ${ev.data.text}\n`);
      this.events.push(ev.data);
      this.waiters = this.waiters.filter((w) => {
        if (!w.pred(ev.data)) return true;
        w.resolve(ev.data);
        return false;
      });
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => this.keepLog(d));
  }

  private keepLog(s: string): void {
    this.log = (this.log + s).slice(-16000);
    // the guest kernel died: whoever waits for the guest is told at once, with its console
    if (/Kernel panic/.test(s)) setTimeout(() => this.kill(), 1000);
  }

  /** Boot the guest; resolves once its interface is up and reflecting. */
  static async start(opts: GuestOptions, timeoutMs = 120_000): Promise<QemuGuest> {
    const g = await QemuGuest.launch(opts);
    await g.booted(timeoutMs);
    return g;
  }

  /** Start QEMU. In the server layout it listens on opts.socket and boots only once the switch
   * has connected there (QEMU's vhost-user netdev waits for its backend): see booted(). */
  static async launch(opts: GuestOptions): Promise<QemuGuest> {
    const [bin, ...args] = qemuCommand(opts, await guestImage(), 'stdio');
    mkdirSync(dirname(opts.socket), { recursive: true });
    return new QemuGuest(spawn(bin!, args, { stdio: ['pipe', 'pipe', 'pipe'] }), opts);
  }

  /** Resolves once the guest's interface is up and reflecting; a guest that does not boot is
   * killed and the error carries its console. */
  async booted(timeoutMs = 120_000): Promise<void> {
    try {
      if (!this.events.some((e) => e.event === 'ready')) await this.next((e) => e.event === 'ready', timeoutMs, 'boot');
    } catch (e) {
      this.kill();
      throw e;
    }
  }

  /** The server layout: resolves once QEMU listens on its socket. */
  async listening(timeoutMs = 30_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!existsSync(this.opts.socket)) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`guest ${this.opts.name}: QEMU exited before listening:\n${this.log}`);
      if (Date.now() > until) throw new Error(`guest ${this.opts.name}: QEMU not listening on ${this.opts.socket} after ${timeoutMs} ms:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The next event satisfying pred (from now on). */
  next<T extends GuestEvent>(pred: (e: GuestEvent) => e is T, timeoutMs: number, what: string): Promise<T>;
  next(pred: (e: GuestEvent) => boolean, timeoutMs: number, what: string): Promise<GuestEvent>;
  next(pred: (e: GuestEvent) => boolean, timeoutMs: number, what: string): Promise<GuestEvent> {
    return new Promise((res, rej) => {
      const onExit = () => done(new Error(`guest ${this.opts.name}: QEMU exited (${this.child.exitCode ?? this.child.signalCode}) during ${what}:\n${this.log}`));
      const timer = setTimeout(() => done(new Error(`guest ${this.opts.name}: no answer to ${what} after ${timeoutMs} ms:\n${this.log}`)), timeoutMs);
      const w = { pred, resolve: (e: GuestEvent) => done(null, e) };
      const done = (err: Error | null, e?: GuestEvent) => {
        clearTimeout(timer);
        this.child.off('exit', onExit);
        this.waiters = this.waiters.filter((x) => x !== w);
        if (err) rej(err);
        else res(e!);
      };
      if (this.child.exitCode !== null || this.child.signalCode !== null) return onExit();
      this.child.once('exit', onExit);
      this.waiters.push(w);
    });
  }

  private send(cmd: GuestCommand): void {
    this.child.stdin!.write(`${cmd}\n`);
  }

  async stats(): Promise<Extract<GuestEvent, { event: 'stats' }>> {
    const p = this.next((e): e is Extract<GuestEvent, { event: 'stats' }> => e.event === 'stats', 30_000, 'stats');
    this.send('stats');
    return p;
  }

  /** Unload and load the network driver: a device reset inside the vhost-user session. */
  async reload(timeoutMs = 60_000): Promise<void> {
    const p = this.next((e) => e.event === 'reloaded' || e.event === 'error', timeoutMs, 'reload');
    this.send('reload');
    const e = await p;
    if (e.event === 'error') throw new Error(`guest ${this.opts.name}: reload failed: ${e.text}`);
  }

  /** Reboot the guest (QEMU resets the device and boots again); resolves once it is ready. */
  async reboot(timeoutMs = 120_000): Promise<void> {
    const p = this.next((e) => e.event === 'ready', timeoutMs, 'reboot');
    this.send('reboot');
    await p;
  }

  /** Carrier changes, kernel warnings about the network path, and the guest's other warnings
   * (the emulation's), seen on the console since it booted. */
  evidence(): { carrier_events: number; kernel_warnings: string[]; other_warnings: string[] } {
    const warn = (e: GuestEvent) => e.event === 'kmsg' && e.level <= 4;
    const text = (e: GuestEvent) => (e.event === 'kmsg' ? [`<${e.level}> ${e.text}`] : []);
    return {
      carrier_events: this.events.filter((e) => e.event === 'carrier').length,
      kernel_warnings: this.events.flatMap((e) => (e.event === 'kmsg' && isKernelWarning(e) ? text(e) : [])),
      other_warnings: this.events.flatMap((e) => (warn(e) && !(e.event === 'kmsg' && isKernelWarning(e)) ? text(e) : [])),
    };
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.kill(), 5000);
    await gone;
    clearTimeout(t);
  }
}

/** The guest kernel's version, for reports. */
export function guestKernel(): string {
  return readFileSync(join(GUEST_CACHE, 'version'), 'utf8').trim();
}
