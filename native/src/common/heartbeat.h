/* SPDX-License-Identifier: Apache-2.0
 * The heartbeat page a datapath generation shares with the keeper: one page of a memfd (never a
 * file on disk: the packet loop writes it every iteration), reached through <run-dir>/heartbeat,
 * a symlink to /proc/<pid>/fd/<fd>; written by the packet loop, only read by the keeper.
 * A beat that stops moving makes the keeper look at the process (see keeper/gen.c).
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
};

#endif
