// The commands every native control socket has built in (native/src/common): list-commands and
// events/subscribe. The per-process tables (dp.ts, keeper.ts, probe.ts) add their own.
import { z } from 'zod';
import { request } from '../rpc.js';

export const ctl = {
  listCommands: request('list-commands', z.object({}).strict(), z.object({ commands: z.array(z.object({ name: z.string(), usage: z.string() })) })),
  /** from now on this connection also carries the process's events ({event, data} lines) */
  eventsSubscribe: request('events/subscribe', z.object({}).strict(), z.object({}).passthrough()),
} as const;
