/* SPDX-License-Identifier: Apache-2.0
 * The heartbeat page a datapath generation shares with the keeper: one page of a memfd (never a
 * file on disk: the packet loop writes it every iteration), reached through <run-dir>/heartbeat,
 * a symlink to /proc/<pid>/fd/<fd>. beat is written by the packet loop and read by the keeper;
 * a beat that stops moving makes the keeper look at the process (see keeper/gen.c).
 * peer_fenced is written by the keeper the moment it finds the generation at the other end of
 * the peer link dead: from the next iteration on, the packet loop sends nothing into it and
 * holds what it would have sent there for the VMs on their way here (no syscall, no latency
 * of a control request). Attaching a new peer link clears it.
 */
#ifndef HITLESS_HEARTBEAT_H
#define HITLESS_HEARTBEAT_H

#include <stdint.h>

#define HL_HB_MAGIC 0x484c4842u /* "HLHB" */
#define HL_HB_FILE "heartbeat"

struct hl_heartbeat {
	uint32_t magic;
	uint32_t pid;
	uint64_t beat;
	uint32_t peer_fenced;
};

#endif
