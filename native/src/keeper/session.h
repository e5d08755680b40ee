/* SPDX-License-Identifier: Apache-2.0
 * A vhost-user session's state as the keeper keeps it: not a log of messages but what a new
 * backend needs to serve the same guest — features, protocol features, the latest memory table
 * (fds dup'd, mapped read-only for failover), and per vring its size, addresses, position,
 * eventfds and enable bit. Updated from every frontend request; replayed to a backend in two
 * stages (pre-load up to ring start, then start with ring positions).
 */
#ifndef HITLESS_KEEPER_SESSION_H
#define HITLESS_KEEPER_SESSION_H

#include "vu.h"

struct kp_vring {
	bool num_set, addr_set, kick_set, call_set, err_set;
	uint32_t num;
	uint32_t base;          /* last position set by the frontend or returned by a backend */
	struct vu_vring_addr addr;
	int kick, call, err;    /* dup'd fds, -1 when none */
	bool kick_nofd, call_nofd;
	bool enabled;
	bool started;           /* kicked since its last stop: a backend is serving it */
	bool stopped;           /* GET_VRING_BASE answered since the last start */
};

struct kp_state {
	bool features_set, pf_set, owner, mem_set, mtu_set, status_set, log_set;
	uint64_t features, protocol_features, mtu, status;
	struct vu_memory mem;
	int mem_fds[VU_MAX_REGIONS];
	void *maps[VU_MAX_REGIONS];   /* read-only views of guest memory (failover reads used->idx) */
	size_t map_len[VU_MAX_REGIONS];
	uint32_t nvrings;             /* highest vring index seen + 1 */
	struct kp_vring vr[VU_MAX_VRINGS];
	uint64_t epoch;               /* bumped by every state change: stale pre-loads are redone */
};

enum kp_stage {
	KP_PRELOAD, /* features, owner, memory, rings up to (not including) their start */
	KP_RINGS,   /* rings only (a backend that still has features and memory) */
	KP_START,   /* positions, deferred eventfds, enable, status: the backend starts */
};

void kp_state_init(struct kp_state *st);
/* Close every fd, unmap guest memory, forget everything (frontend gone or reset). */
void kp_state_clear(struct kp_state *st);

/* Record a checked frontend request. The message keeps its own fds (the caller forwards and
 * closes them); the state takes dups. map_memory: also map regions read-only (failover reads
 * used->idx from them). 0, or -1 with err (then the state is unchanged). */
int kp_state_apply(struct kp_state *st, const struct vu_msg *m, bool map_memory, char *err,
		   size_t errlen);
/* Record what a backend answered (GET_VRING_BASE stops a ring). */
void kp_state_reply(struct kp_state *st, const struct vu_msg *req, const struct vu_msg *reply);

/* May the session move now? false with why: not negotiated yet, a ring stopped mid-reset,
 * dirty logging on, packed rings. */
bool kp_state_movable(const struct kp_state *st, char *why, size_t whylen);
bool kp_state_packed(const struct kp_state *st);

/* Position of a vring read from guest memory (split ring: used->idx). 0 or -errno. */
int kp_state_used_idx(const struct kp_state *st, uint32_t ring, uint16_t *idx);

/* Emit the messages of a stage through send(); bases[] (KP_START) are ring positions by index.
 * Messages carry the session's fds (not dup'd). Stops at the first error from send. */
int kp_state_replay(const struct kp_state *st, enum kp_stage stage, const uint32_t *bases,
		    int (*send)(void *arg, struct vu_msg *m), void *arg);

#endif
