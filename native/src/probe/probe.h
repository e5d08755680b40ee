/* SPDX-License-Identifier: Apache-2.0
 * hitless-probe: emulated VMs (DPDK virtio_user ports) that send sequenced, timestamped UDP
 * flows to each other and measure every interruption RFC 6201 style (frame-loss and
 * timestamp methods). One lcore runs the packet loop; a writer thread turns loop events into
 * JSON lines; the control socket thread serves stats and run-time flow changes.
 *
 * Threading rule for the shared state below: every counter has exactly one writer (the packet
 * loop) and is published with PROBE_SET (relaxed store); other threads read it with
 * PROBE_GET. Fields marked "ctl" are written by the control thread and read by the loop.
 */
#ifndef HITLESS_PROBE_H
#define HITLESS_PROBE_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <rte_ether.h>

#include "util.h"

#define PROBE_MAX_VMS      64
#define PROBE_MAX_QUEUES   8     /* queue pairs per VM port */
#define PROBE_MAX_FLOWS    256
#define PROBE_MAX_RX       512   /* tracked (rx VM, source MAC, flow id, run id) keys */
#define PROBE_RX_SLOTS     2048  /* hash slots for the keys above; power of two */
#define PROBE_GAPS_KEPT    100   /* gap records kept per key for the summary */
#define PROBE_GAP_SAMPLES  4096  /* gap lengths kept per key for percentiles */
#define PROBE_DUP_WINDOW   4096  /* bits in the duplicate-detection window */
#define PROBE_FRAME_MIN    64
#define PROBE_FRAME_MAX    1500
#define PROBE_BURST_MAX    64    /* frames per burst offered to a port */
/* frames per flow per tick (in bursts), the rest carries over: 2.56 Mpps a flow at the default
 * 100 us tick, and never more at once than a quarter of a ring (a probe that was descheduled
 * catches up over several ticks rather than overflow its own ring) */
#define PROBE_TICK_MAX     256
/* a schedule further behind than this many ticks, and than PROBE_TICK_MAX frames (the probe
 * was not running), skips what it missed rather than burst it out later: a sender never
 * offers more than a quarter of a ring at once */
#define PROBE_LAG_TICKS    2
#define PROBE_FLOOD_BURST  32
#define PROBE_MAX_PPS      100000000ull

#define PROBE_MAGIC        0x484c5042u /* "HLPB" */
#define PROBE_UDP_PORT     18516 /* the first of PROBE_UDP_PORTS destination ports */
#define PROBE_UDP_PORTS    256
/* Frame layout: Ethernet(14) IPv4(20) UDP(8) then the payload below (22 bytes: fits 64). */
#define PROBE_OFF_MAGIC    42
#define PROBE_OFF_FLOW     46
#define PROBE_OFF_SEQ      48
#define PROBE_OFF_TS       56
#define PROBE_HDR_LEN      64

#define PROBE_SET(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define PROBE_GET(x)    __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define PROBE_ADD(x, n) PROBE_SET(x, (x) + (n)) /* single writer only */

struct probe_vm {
	char name[HL_NAME_MAX + 1];
	char socket[108];
	bool server;
	bool packed;
	uint16_t nq;          /* queue pairs of its port (queues=N) */
	struct rte_ether_addr mac;
	uint32_t ip;          /* network order, derived from the MAC */
	uint16_t port;
	bool port_started;
	bool link_up;         /* as the frontend last saw it */
	uint64_t next_poll_ns; /* link poll throttle for a dead client-mode port */
	uint64_t rx_pause_until_ns; /* ctl: the guest stops reading its RX ring until then */
	bool reset_req;       /* ctl: reset the device (driver reload) at the next iteration */
	uint64_t resets;
	uint64_t rx, tx, tx_refused, foreign, link_down, untracked;
};

struct probe_flow {
	uint16_t id;
	uint16_t src;          /* index into vms */
	int dst;               /* local VM index, or -1 for a remote MAC */
	bool reflect;          /* the remote MAC sends it back: received at src */
	uint16_t txq;          /* the source port's transmit queue: flows spread over them */
	struct rte_ether_addr dst_mac;
	char name[HL_NAME_MAX + 2 + RTE_ETHER_ADDR_FMT_SIZE]; /* "SRC:DST" as given */
	uint64_t pps;          /* ctl: current rate, 0 = flood */
	bool paused;           /* ctl */
	/* loop-private pacing state */
	uint64_t cur_pps;
	bool cur_paused;
	uint64_t base_ns, base_seq;
	/* loop-private: the refusal under way (rate mode), reported as one event when a send
	 * is taken whole again or sending stops */
	uint64_t ref_n, ref_first_seq, ref_start_ns, ref_last_ns;
	bool ref_pool;         /* the pool had no mbufs, rather than the ring no room */
	/* shared counters */
	uint64_t next_seq;     /* = offered (rate mode) */
	uint64_t tx, tx_refused;
	uint64_t unsent_late;  /* frames the schedule skipped: the probe itself was not running */
	uint64_t first_tx_ns;
	int rx_idx;            /* tracked key where it is received here, -1 if remote */
	uint8_t tmpl[PROBE_FRAME_MAX];
};

struct probe_gap {
	uint64_t start_ns, end_ns, seq_before, seq_after;
	uint64_t tx_before_ns, tx_after_ns; /* sender timestamps of the two frames */
};

/* Receive-side state of one key: rx VM + source MAC + flow id (+ the sender's run id). */
struct probe_rx {
	uint16_t vm, flow_id, run_id;
	struct rte_ether_addr src;
	int flow;              /* local flow index when this is its intended receiver, else -1 */
	bool resumed;          /* its flow was paused and resumed: the next gap is not a break */
	bool in_late;          /* the last arrival was late: a run of late frames has one event */
	uint64_t received, dup, reordered;
	uint64_t missing;      /* sequence numbers below max_seq that have not arrived (yet) */
	uint64_t late;         /* arrivals that filled a missing number: delayed, not lost */
	uint64_t max_seq, last_seq, first_ns, last_ns, last_tx_ns;
	uint64_t lat_sum_ns, lat_max_ns;
	uint64_t gap_count, max_gap_ns; /* gap_count is stored with release after gaps[] */
	struct probe_gap gaps[PROBE_GAPS_KEPT];
	uint32_t gap_us[PROBE_GAP_SAMPLES];
	uint64_t window[PROBE_DUP_WINDOW / 64];
};

struct probe_cfg {
	double duration_s;     /* 0 = until stopped */
	uint64_t gap_ns, tick_ns, drain_ns, connect_timeout_ns;
	uint32_t frame_size;
	uint64_t touch_mb;     /* guest memory written at start: a guest that has used it */
	const char *ctl_path, *events_path, *summary_path;
};

enum probe_stop_reason { PROBE_STOP_NONE, PROBE_STOP_DURATION, PROBE_STOP_SIGNAL, PROBE_STOP_CTL };

enum probe_ev_type { PROBE_EV_START, PROBE_EV_STOP, PROBE_EV_LINK, PROBE_EV_GAP, PROBE_EV_LATE,
		     PROBE_EV_REFUSED };

/* Fixed-size record passed from the loop to the writer thread through an rte_ring. */
struct probe_event {
	uint32_t type;
	uint16_t vm;
	uint16_t up;
	uint16_t flow;         /* PROBE_EV_REFUSED: index into flows */
	int32_t rx_idx;
	uint32_t reason;
	uint64_t t_ns;
	struct probe_gap gap;
};

struct probe_ctx {
	struct probe_cfg cfg;
	struct probe_vm vms[PROBE_MAX_VMS];
	unsigned n_vms;
	struct probe_flow flows[PROBE_MAX_FLOWS];
	unsigned n_flows;
	struct probe_rx *rx;           /* PROBE_MAX_RX entries */
	unsigned n_rx;                 /* published with release after the entry is filled */
	uint16_t rx_slot[PROBE_RX_SLOTS]; /* 0 = empty, else rx index + 1 */
	uint16_t run_id;               /* random per process; the UDP source port */
	struct rte_mempool *pool;
	struct rte_ring *ev_ring;
	uint64_t events_dropped;
	struct ctl_server *ctl;
	FILE *events_out;
	pthread_t writer;
	bool writer_started;
	volatile bool writer_stop;
	uint64_t t_start, t_stop_send; /* 0 until sending starts / stops */
	uint32_t stop_reason;          /* ctl writes PROBE_STOP_CTL */
	uint64_t loops;
	/* the meter's own health: its packet loop's longest stall (a stalled probe neither
	 * posts receive buffers nor sends on time, which shows up as the path's loss) */
	uint64_t loop_max_gap_ns, loop_max_gap_at_ns;
};

/* args.c */
int probe_parse_args(struct probe_ctx *ctx, int argc, char **argv);
/* Index of the VM named name, or -1. */
int probe_find_vm(const struct probe_ctx *ctx, const char *name);
void probe_usage(FILE *f);

/* port.c */
int probe_ports_init(struct probe_ctx *ctx);
int probe_links_wait(struct probe_ctx *ctx, volatile sig_atomic_t *quit);
void probe_links_poll(struct probe_ctx *ctx, uint64_t now);
void probe_ports_close(struct probe_ctx *ctx);
int probe_port_reset(struct probe_ctx *ctx, struct probe_vm *vm);

/* traffic.c */
int probe_traffic_init(struct probe_ctx *ctx);
void probe_tx_tick(struct probe_ctx *ctx, uint64_t now);
bool probe_tx_flood(struct probe_ctx *ctx, uint64_t now);
void probe_tx_refusals_end(struct probe_ctx *ctx);
void probe_rx_poll(struct probe_ctx *ctx, uint64_t now);
uint32_t probe_mac_ip(const struct rte_ether_addr *mac);

/* events.c */
int probe_events_start(struct probe_ctx *ctx);
void probe_event_push(struct probe_ctx *ctx, const struct probe_event *ev);
void probe_events_stop(struct probe_ctx *ctx);

/* report.c */
json_t *probe_report(struct probe_ctx *ctx, uint64_t now, bool final);
json_t *probe_gap_json(struct probe_ctx *ctx, const struct probe_rx *e,
		       const struct probe_gap *g, bool open);
void probe_rx_names(struct probe_ctx *ctx, const struct probe_rx *e, char *src, size_t srclen,
		    char *flow, size_t flowlen);

/* control.c */
int probe_control_start(struct probe_ctx *ctx);

#endif
