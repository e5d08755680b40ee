// hitless-hold's control commands (native/src/hold): an OVS-DPDK generation's holding port,
// which keeps a moving VM's frames while its rings are between two ovs-vswitchd processes.
import { z } from 'zod';
import { request } from '../rpc.js';

const count = z.number().int().min(0);

export const hold = {
  /** from the reply on, frames sent out of the generation's hold port wait, in order */
  holdStart: request('hold/start', z.object({}).strict(), z.object({ holding: z.literal(true) })),
  /** every held frame sent back into the hold port, oldest first, before the reply; frames are
   * reflected as they come from then on */
  holdRelease: request('hold/release', z.object({}).strict(), z.object({ released: count })),
  statsShow: request(
    'stats/show',
    z.object({}).strict(),
    z.object({ holding: z.boolean(), holds: count, released: count, reflected: count, send_errors: count, ignored: count, dropped: count }),
  ),
} as const;
