/* SPDX-License-Identifier: Apache-2.0
 * The heartbeat page a datapath generation shares with the keeper: one page of a memfd (never a
 * file on disk: the packet loop writes it every iteration), reached through <run-dir>/heartbeat,
 * a symlink to /proc/<pid>/fd/<fd>. beat is written by the packet loop and read by the keeper;
 * a beat that stops moving makes the keeper look at the process (see keeper/gen.c).
 * peer_fenced is written by the keeper the moment it finds the generation at the other end of
 * the peer link dead: from the next iteration on, the packet loop sends nothing into it and
 * holds what it would have sent there for the VMs on their way here (no syscall, no latency
 * of a control request). Attaching a new peer link clears it.
 * frames_in / frames_out count every frame reference the process took (received on a port,
 * dequeued from a guest, copied for a flood, made by it) and every one that left it (put into a
 * guest's ring, handed to a port, freed with a drop counted). They are bumped right where that
 * happens, so after a crash in - out is the number of frames that were inside the dead process:
 * the keeper still maps the page and reports it (gen/dead lost_inside).
 * peer_link names the peer link the generation has now (a hash of its socket path: both ends
 * write the same; 0: none), and peer_tx / peer_rx count the frames handed into it and taken
 * out of it since it was attached: when a generation dies, what it had handed into its link
 * and the survivor never took out (and the other way round) is lost in the link, and the keeper
 * counts it from the two pages (gen/dead lost_in_link) once the survivor has set
 * peer_fence_ack: it has taken what it could out of the link and sends nothing more into it,
 * so its two counts are final.
 * alive is a robust, process-shared mutex the packet loop's thread locks at start and holds
 * for its life (features has HL_HB_ALIVE once it does). When that thread exits, however it
 * dies, the kernel marks the lock's owner dead and wakes whoever waits on it, early in the
 * exit, long before the process's memory is torn down and its sockets close: the keeper waits
 * there (keeper/gen.c) and costs nothing while the generation lives.
 * loop_cpu says where the packet loop runs; co_serving, kept by the keeper, how many other
 * generations serve VMs from the same CPU (mid-upgrade, the old and the new one): while there
 * are, a busy loop yields its CPU every DP_YIELD_NS and an idle one at once, so they take
 * turns in short slices. With no such generation it never yields: a yield gives a busy
 * neighbour of any other kind a whole scheduler slice (milliseconds).
 */
#ifndef HITLESS_HEARTBEAT_H
#define HITLESS_HEARTBEAT_H

#include <pthread.h>
#include <stdint.h>

#define HL_HB_MAGIC 0x484c4842u /* "HLHB" */
#define HL_HB_FILE "heartbeat"
#define HL_HB_ALIVE 1u /* features: alive is held by the packet loop's thread */

struct hl_heartbeat {
	uint32_t magic;
	uint32_t pid;
	uint64_t beat;
	uint32_t peer_fenced;
	uint32_t pad;
	uint64_t frames_in;
	uint64_t frames_out;
	uint64_t peer_link;
	uint64_t peer_tx;
	uint64_t peer_rx;
	uint64_t peer_fence_ack;
	/* a page of a generation built before these has zeros here */
	uint32_t features;
	uint32_t pad2;
	pthread_mutex_t alive;
	uint32_t loop_cpu;   /* the packet loop's CPU + 1 (0: not known yet) */
	uint32_t co_serving; /* keeper-written: other generations serving VMs from that CPU */
};

/* The peer_link of a link by its socket path (FNV-1a; never 0). */
static inline uint64_t
hl_peer_link_id(const char *sock)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (const unsigned char *p = (const unsigned char *)sock; *p; p++)
		h = (h ^ *p) * 0x100000001b3ull;
	return h ? h : 1;
}

#endif
