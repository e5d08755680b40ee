// The names every part of Hitless passes around, each with one schema: VMs and generations,
// hosts, MAC addresses, release versions. Pure.
import { z } from 'zod';

/** A VM, a generation or a lab host's name: what the native processes accept (hl_valid_name). */
export const Name = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/, '1-32 of A-Z a-z 0-9 _ . -, not starting with . or -');

/** A host in the console's fleet: an ssh alias or a name given by hand. */
export const HostName = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$/, '1-63 of A-Z a-z 0-9 _ . -, not starting with . or -');

/** A MAC address as aa:bb:cc:dd:ee:ff, either case on input, lower case after parsing. */
export const Mac = z
  .string()
  .regex(/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/, 'a MAC address aa:bb:cc:dd:ee:ff')
  .transform((s) => s.toLowerCase());

export const Version = z.string().regex(/^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$/, 'a release version like 1.2.3');
