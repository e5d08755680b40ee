// hitless-guest's console, defined once: the JSON lines a lab QEMU guest prints on its serial
// console (native/src/guest/hitless-guest.c) and the commands it reads there.
import { z } from 'zod';

const int = z.number().int();

export const GuestEvent = z.discriminatedUnion('event', [
  /** the interface is up and reflecting ("reloaded": again, after a driver reload) */
  z.object({ event: z.enum(['ready', 'reloaded']), iface: z.string(), mac: z.string(), queues: int }),
  z.object({ event: z.literal('carrier'), up: z.boolean() }),
  /** a kernel message logged after start-up; level is its syslog priority (0 emerg .. 7 debug) */
  z.object({ event: z.literal('kmsg'), level: int.min(0).max(7), text: z.string() }),
  z.object({
    event: z.literal('stats'),
    rx: int,
    reflected: int,
    tx_errors: int,
    foreign: int,
    kmsg_lines: int,
    carrier: int,
    /** the kernel's own count of carrier changes since the driver was loaded */
    carrier_changes: int,
    reloads: int,
    /** frames sent back, by queue pair */
    reflected_per_queue: z.array(int),
  }),
  z.object({ event: z.literal('rebooting') }),
  z.object({ event: z.literal('error'), text: z.string() }),
]);
export type GuestEvent = z.infer<typeof GuestEvent>;

export type GuestCommand = 'stats' | 'reload' | 'reboot';

/** A guest kernel message that says its network path went wrong: an error of any subsystem,
 * or a warning of the virtio transport, the network stack or driver, or the netdev watchdog's
 * transmit timeout whatever its level. Other warnings (a TCG guest's "hrtimer: interrupt took
 * N ns" when the host is busy) are the emulation's, reported beside but not counted. */
export function isKernelWarning(e: { level: number; text: string }): boolean {
  if (/NETDEV WATCHDOG|transmit queue \d+ timed out/i.test(e.text)) return true;
  return e.level <= 3 || (e.level === 4 && /virtio|vhost|\bnet|eth\d|\blink\b|queue/i.test(e.text));
}
