/* SPDX-License-Identifier: Apache-2.0
 * hitless-dp: one datapath generation of one release. Shared state between its files.
 *
 * Threads: the main lcore runs the packet loop (loop.c); the control socket's thread and
 * rte_vhost's message thread (vm.c callbacks) change configuration. Each feature registers
 * its own control commands with dp_<feature>_ctl_register(), which main.c calls at start and
 * which returns 0 or the first error of ctl_register(): vm.c the vm/ commands and
 * debug/stall, fdb_cmds.c the fdb/ ones, fwdlib.c lib/, uplink.c peer/, stats.c gen/info and
 * stats/show. Ownership rules:
 *  - per-VM counters and pending queues are written only by the loop;
 *  - a VM slot's identity (name, MAC, socket) changes only while the loop cannot see it
 *    (slot not in use, or after dp_quiesce());
 *  - flags the loop reads (in_use, ready, draining, stall_until_ns) are atomics.
 */
#ifndef HITLESS_DP_H
#define HITLESS_DP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>

#include <rte_common.h>
#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "ctl.h"
#include "fdb.h"
#include "heartbeat.h"
#include "hitless_fwd.h"
#include "util.h"

#define DP_MAX_VMS 64
#define DP_BURST 32
#define DP_PEND_MAX 512 /* packets held per VM while its RX ring is full */
#define DP_FENCE_US 2000 /* the longest a VM's direct frames wait behind its peer-link fence */
#define DP_FENCE_RECENT_NS (50 * 1000000ull) /* peer-link use that calls for a fence */
#define DP_PEER_QUIET_NS (1000 * 1000000ull)  /* no deep idle sooner after peer-link traffic */
/* a busy loop yields its core at least this often: two generations sharing a core mid-upgrade
 * take turns in slices of this, not in the scheduler's slices of milliseconds (loop.c) */
#define DP_YIELD_NS      50000ull
/* frames crossed the peer link this recently: the other generation is at work on it too */
#define DP_PEER_ACTIVE_NS 10000000ull
/* frames per millisecond above which the loop never naps (200 kpps): a nap's wake-up comes
 * late now and then (a millisecond and more on a busy or virtualised host), and at that rate
 * a guest's ring of 1024 lasts 5 ms; below it, a ring outlasts any wake-up seen (loop.c) */
#define DP_HOT_PKTS_PER_MS 200u
/* a VM's virtqueues as the backend names them: the guest's receive ring, its transmit ring */
/* A VM's queue pair q is vring 2q (the guest's receive ring: we enqueue) and 2q+1 (its
 * transmit ring: we dequeue). At most DP_MAX_QP pairs are served, as many as the keeper
 * relays (its GET_QUEUE_NUM answer says so to the guest); a device with more is refused. */
#define VIRTIO_RXQ 0
#define VIRTIO_TXQ 1
#define DP_MAX_QP  16
#define DP_SLOW_DRAIN_MS 20 /* a device stop slower than this is logged with its reasons */

/* Counters of one VM port, from the switch's side: rx = from the guest, tx = to the guest. */
struct dp_port_stats {
	uint64_t rx_pkts, rx_bytes;
	uint64_t tx_pkts, tx_bytes;
	uint64_t tx_retries;     /* enqueue attempts that found the guest RX ring full */
	uint64_t drop_ring_full; /* given up after the retry bound or pending queue full */
	uint64_t drop_no_dest;   /* no FDB entry and nowhere to send it */
	uint64_t drop_not_ready; /* destination VM not connected to this generation */
	uint64_t drop_stalled;   /* destination VM stalled by debug/stall */
	uint64_t last_rx_ns, last_tx_ns;
	uint64_t first_rx_ns, first_tx_ns; /* first packets since the device last started */
	uint64_t fences;         /* arrivals that fenced the peer path (see loop.c) */
	uint64_t fence_timeouts; /* fences released by the bound, not by their marker */
} __rte_cache_aligned;

struct dp_vm {
	/* identity: set by vm/add before in_use is published */
	char name[HL_NAME_MAX + 1];
	struct rte_ether_addr mac;
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool client;
	uint64_t added_ns;
	/* flags */
	bool in_use;            /* atomic */
	bool ready;             /* atomic: the loop may serve vid */
	bool draining;          /* atomic: stop dequeuing, flush pending, then let go */
	bool drained;           /* atomic, set by the loop once it no longer touches the VM */
	uint64_t drain_deadline_ns;
	int vid;                /* rte_vhost device id while connected, -1 otherwise */
	int arriving_vid;       /* atomic: a connection whose device has not started yet (a
				 * keeper pre-load: the VM is on its way here), -1 otherwise */
	uint64_t stall_until_ns;/* atomic */
	/* the rings the guest has running, for device qvid (rte_vhost's vring_state_changed):
	 * bit q of rxq_ready = vring 2q, of txq_ready = vring 2q+1. Atomic. */
	int qvid;
	uint32_t rxq_ready, txq_ready;
	uint64_t connected_ns, disconnected_ns, connects;
	/* loop-owned */
	struct rte_mbuf *pend[DP_PEND_MAX];
	uint16_t pend_n;
	uint64_t pend_since_ns;
	bool pend_for_arrival;  /* what is held waits for the VM to arrive (not for its ring) */
	/* the reordering fence (loop.c): set by new_device (atomic), the rest loop-owned */
	bool fence_req;
	bool fencing;
	uint64_t fence_deadline_ns;
	uint64_t peer_tx_ns;    /* when a frame for it last went over the peer link */
	uint16_t fence_n;
	struct rte_mbuf *fence_q[DP_PEND_MAX];
	struct dp_port_stats st;
	/* its guest memory mapped ahead (prefault.c), the latest memory table's: atomics */
	struct {
		uint64_t seq;   /* the latest job's number (0: none yet) */
		bool done;
		int err;
		uint64_t pages, took_ns;
	} prefault;
};

struct dp_ext_stats {
	uint64_t rx_pkts, rx_bytes, tx_pkts, tx_bytes, drop_tx, drop_no_dest;
	uint64_t announces;
	uint64_t stale; /* caught before the port was its own, discarded at start (uplink.c) */
} __rte_cache_aligned;

/* An external port: the uplink towards the fabric, or the peer link to the host's other
 * generation (net_memif). port is the ethdev id, -1 when absent; the control side publishes
 * and retires it. live is the loop's copy, taken once at the start of each iteration and the
 * only one the loop uses: a port retired mid-iteration is used whole until that iteration
 * ends (dp_ext_close() waits for it with dp_quiesce()), never read as -1 half-way. */
struct dp_ext {
	int port;
	int live;         /* loop thread only */
	uint16_t nq;      /* queues: the peer link has a second one for returned frames */
	bool link_up;     /* loop thread only: refreshed every millisecond */
	uint64_t link_checked_ns;
	char spec[128];   /* what it was created from: interface or memif socket */
	char vdev[48];    /* the vdev name, to remove it again */
	struct dp_ext_stats st;
};

/* A time the loop did not come round: from when it was ready for its next iteration (the end
 * of the last one, or a nap's planned end) to the end of the next one, when that is longer
 * than DP_STALL_NS. No ring was polled meanwhile, and a guest's transmit ring fills (1024
 * entries hold ~100 ms at 10 kpps). Either the host gave the loop no CPU (contention, a
 * stolen vCPU) or an iteration ran long (this program's fault): ran_ns, the CPU time the
 * loop's thread got over the stall (read about once a millisecond and at the stall's end),
 * tells them apart. The long ones are kept with their times (CLOCK_MONOTONIC), so a loss can
 * be placed against them. */
#define DP_STALL_NS      1000000ull
#define DP_STALL_KEEP_NS 10000000ull /* kept in the list from this long */
#define DP_STALLS_KEPT   32

struct dp_stall {
	uint64_t start_ns, dur_ns, ran_ns;
};

struct dp_loop_stats {
	uint64_t iterations, busy_iterations, idle_sleeps, flood_pkts;
	uint64_t busy_cycles;  /* TSC cycles spent in iterations that moved packets */
	uint64_t busy_pkts;    /* packets received in those iterations (uplink + VMs) */
	uint64_t stalls, stall_ns, stall_max_ns, stall_max_at_ns; /* stalls >= DP_STALL_NS */
	/* stalls >= DP_STALL_KEEP_NS, the last DP_STALLS_KEPT of them: entry i % DP_STALLS_KEPT
	 * is written before n_kept is raised to i + 1 (release) */
	struct dp_stall kept[DP_STALLS_KEPT];
	uint64_t n_kept;
} __rte_cache_aligned;

/* A loaded forwarding stage. */
struct dp_stage {
	const struct hitless_fwd_ops *ops; /* NULL: none */
	void *handle;
	char path[256];
};

/* A stage swap, asked of the loop by the control thread (fwdlib.c) and made by the loop at
 * an iteration boundary (loop.c), where no packet is between stages. */
struct dp_swap {
	bool pending;                       /* atomic: set by control, taken by the loop */
	bool done;                          /* atomic: set by the loop once made or refused */
	const struct hitless_fwd_ops *to;   /* the stage to switch to */
	const struct hitless_fwd_ops *conv; /* the stage that converts the FDB's words */
	uint32_t now_s;
	uint64_t asked_ns;                  /* when control asked */
	uint64_t taken_ns;                  /* when the loop stopped forwarding for it */
	uint64_t window_ns;                 /* how long the loop did not forward */
	struct dp_fdb_migration mig;
};

struct dp {
	/* configuration */
	char gen_id[HL_NAME_MAX + 1];
	char run_dir[80];
	char uplink_iface[32];
	char peer_sock[96];
	bool peer_server;
	char fwd_path[256];  /* the stage to load at start (--fwd-lib) */
	uint32_t idle_max_us;
	/* SCHED_FIFO priority of the threads that take part in a switch (vhost messages; the
	 * packet loop while it drains a VM being let go) */
	uint32_t rt_prio;
	pthread_t loop_thread;
	uint32_t idle_grace_us;
	uint32_t idle_deep_ms;  /* sleep bound while serving no VM (dp_wake ends it) */
	bool yield;         /* yield the core after light iterations (default on) */
	uint32_t retry_us;     /* hold bound for a guest whose RX ring is full */
	uint32_t transit_us;   /* hold bound for a VM not served here yet (in transit) */
	uint64_t started_ns;
	/* resources */
	struct rte_mempool *pool;
	struct dp_fdb *fdb;
	struct ctl_server *ctl;
	const struct hitless_fwd_ops *fwd; /* atomic: the stage the loop calls (fwdlib.c) */
	struct dp_stage stage, prev_stage; /* the running stage; the one lib/rollback returns to */
	struct dp_stage staged;            /* opened and checked by lib/load, not yet swapped in */
	struct dp_swap swap;               /* a stage swap the loop is asked to make */
	uint32_t swaps;                    /* stage swaps made (lib/swap and lib/rollback) */
	struct rte_ring *announce_q;       /* frames the control side wants sent on the uplink */
	struct dp_ext up, peer;
	uint64_t peer_prefault_bytes; /* atomic: the peer link's buffers mapped ahead (prefault.c) */
	/* loop */
	volatile bool quit;
	bool loop_running;                 /* atomic */
	uint64_t epoch;                    /* atomic: bumped at the top of every iteration */
	uint32_t wake;                     /* atomic futex word: bumped by dp_wake() */
	volatile struct hl_heartbeat *hb;  /* shared with the keeper: beat = epoch, peer_fenced */
	bool peer_fenced;                  /* loop thread only: hb->peer_fenced this iteration */
	struct dp_loop_stats ls;

	struct dp_vm vms[DP_MAX_VMS];      /* port index = slot + 1 */
};

extern struct dp dp;

static inline uint16_t dp_vm_port(const struct dp_vm *vm) { return (uint16_t)(vm - dp.vms) + 1; }

/* Frames taken into / let out of the process, in the heartbeat page (common/heartbeat.h): any
 * thread, so atomic. */
static inline void dp_frames_in(uint32_t n) { __atomic_fetch_add(&dp.hb->frames_in, n, __ATOMIC_RELAXED); }
static inline void dp_frames_out(uint32_t n) { __atomic_fetch_add(&dp.hb->frames_out, n, __ATOMIC_RELAXED); }

/* args.c */
int dp_parse_args(int argc, char **argv);
void dp_usage(const char *prog);

/* loop.c */
int dp_loop(void *arg);
void dp_quiesce(void *unused);
/* Wake the loop from a sleep: a VM arrives, a stage swap or a quiesce waits for it. Any thread. */
void dp_wake(void);

/* vm.c */
struct dp_vm *dp_vm_find(const char *name);
/* The VM named by args' "vm", or NULL with err "unknown-vm". */
struct dp_vm *dp_vm_arg(json_t *args, struct ctl_error *err);
void dp_vm_del_all(void);
const char *dp_port_name(uint16_t port, void *arg);
int dp_port_lookup(const char *name, uint16_t *port, void *arg);
int dp_vm_ctl_register(struct ctl_registry *reg);

/* uplink.c */
int dp_uplink_init(const char *iface);
int dp_peer_init(const char *sock, bool server);
int dp_announce(const struct dp_vm *vm);
void dp_ext_close(struct dp_ext *e);
json_t *dp_ext_json(const struct dp_ext *e);
int dp_peer_ctl_register(struct ctl_registry *reg);

/* fdb_cmds.c */
int dp_fdb_ctl_register(struct ctl_registry *reg);

/* prefault.c */
void dp_prefault_table(int vid);
void dp_prefault_peer(uint16_t port);
void dp_prefault_peer_stop(void);

/* stats.c */
json_t *dp_stats_json(const struct dp_vm *only);
json_t *dp_gen_info_json(void);
int dp_stats_ctl_register(struct ctl_registry *reg);

/* telemetry.c */
int dp_telemetry_register(void);

/* fwdlib.c */
int dp_fwd_load(const char *path);
/* The running stage, safe from any thread. */
json_t *dp_running_stage_json(void);
int dp_fwd_ctl_register(struct ctl_registry *reg);

#endif
