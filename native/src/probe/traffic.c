/* SPDX-License-Identifier: Apache-2.0
 * The packet loop's work: paced sending of sequenced frames, and receive-side accounting
 * (loss, duplicates, reordering, gaps, latency). Nothing here makes a syscall, allocates from
 * the heap or logs; events leave through probe_event_push (a lock-free ring).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include "probe.h"

#define RX_BURST 32
#define RX_ROUNDS 8 /* bursts per port per loop iteration at most */

/* 198.18.0.0/15 (RFC 2544 benchmarking space) address derived from the low 17 bits of the
 * MAC, so every probe process computes the same address for a given VM. Network order. */
uint32_t
probe_mac_ip(const struct rte_ether_addr *mac)
{
	uint32_t low = ((uint32_t)(mac->addr_bytes[3] & 1) << 16) |
		       ((uint32_t)mac->addr_bytes[4] << 8) | mac->addr_bytes[5];

	return rte_cpu_to_be_32(RTE_IPV4(198, 18, 0, 0) | low);
}

/* Prebuild a flow's whole frame (headers, checksum, magic, flow id); sending then only
 * copies it and stamps the sequence number and the tx time. */
static void
build_template(struct probe_ctx *ctx, struct probe_flow *f)
{
	uint32_t fs = ctx->cfg.frame_size;
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)f->tmpl;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
	uint32_t magic = rte_cpu_to_be_32(PROBE_MAGIC);
	uint16_t flow = rte_cpu_to_be_16(f->id);

	memset(f->tmpl, 0, sizeof(f->tmpl));
	rte_ether_addr_copy(&f->dst_mac, &eth->dst_addr);
	rte_ether_addr_copy(&ctx->vms[f->src].mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(fs - sizeof(*eth)));
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = ctx->vms[f->src].ip;
	ip->dst_addr = probe_mac_ip(&f->dst_mac);
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	udp->src_port = rte_cpu_to_be_16(ctx->run_id);
	/* a port per flow: a switch or guest that spreads flows over queues by their 5-tuple
	 * can tell the flows of one VM pair apart */
	udp->dst_port = rte_cpu_to_be_16(PROBE_UDP_PORT + f->id % PROBE_UDP_PORTS);
	udp->dgram_len = rte_cpu_to_be_16((uint16_t)(fs - sizeof(*eth) - sizeof(*ip)));
	memcpy(f->tmpl + PROBE_OFF_MAGIC, &magic, sizeof(magic));
	memcpy(f->tmpl + PROBE_OFF_FLOW, &flow, sizeof(flow));
}

static unsigned
key_hash(uint16_t vm, const struct rte_ether_addr *src, uint16_t flow_id, uint16_t run_id)
{
	uint64_t h = vm * 0x9e3779b97f4a7c15ull;

	for (int i = 0; i < RTE_ETHER_ADDR_LEN; i++)
		h = (h ^ src->addr_bytes[i]) * 0x100000001b3ull;
	h = (h ^ flow_id) * 0x100000001b3ull;
	h = (h ^ run_id) * 0x100000001b3ull;
	return (unsigned)(h ^ (h >> 29)) & (PROBE_RX_SLOTS - 1);
}

/* Find the receive state for a key, creating it on first sight. Returns its index, or -1
 * when the table is full (the frame is then counted as untracked). Entries are filled
 * before n_rx is published, so readers on other threads only see complete keys. */
static int
rx_lookup(struct probe_ctx *ctx, uint16_t vm, const struct rte_ether_addr *src,
	  uint16_t flow_id, uint16_t run_id)
{
	unsigned h = key_hash(vm, src, flow_id, run_id);

	for (unsigned n = 0; n < PROBE_RX_SLOTS; n++, h = (h + 1) & (PROBE_RX_SLOTS - 1)) {
		uint16_t s = ctx->rx_slot[h];
		struct probe_rx *e;

		if (s == 0) {
			unsigned idx = ctx->n_rx;
			if (idx == PROBE_MAX_RX)
				return -1;
			e = &ctx->rx[idx];
			e->vm = vm;
			e->src = *src;
			e->flow_id = flow_id;
			e->run_id = run_id;
			e->flow = -1;
			ctx->rx_slot[h] = (uint16_t)(idx + 1);
			__atomic_store_n(&ctx->n_rx, idx + 1, __ATOMIC_RELEASE);
			return (int)idx;
		}
		e = &ctx->rx[s - 1];
		if (e->vm == vm && e->flow_id == flow_id && e->run_id == run_id &&
		    rte_is_same_ether_addr(&e->src, src))
			return s - 1;
	}
	return -1;
}

/* Allocate the mbuf pool and the receive table, prebuild every flow's frame and the
 * receive keys of local flows (so their intended receiver is known before traffic). */
int
probe_traffic_init(struct probe_ctx *ctx)
{
	unsigned n_mbufs = 2048;

	/* each queue pair's receive ring is kept full and its transmit ring may hold a ring's
	 * worth before the driver frees them: both, and a burst's slack, per queue pair */
	for (unsigned i = 0; i < ctx->n_vms; i++)
		n_mbufs += ctx->vms[i].nq * (2 * 1024 + 512);

	ctx->pool = rte_pktmbuf_pool_create("probe_pool", n_mbufs, 256, 0,
					    RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
	if (ctx->pool == NULL)
		return -rte_errno;
	ctx->rx = calloc(PROBE_MAX_RX, sizeof(*ctx->rx));
	if (ctx->rx == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < ctx->n_flows; i++) {
		struct probe_flow *f = &ctx->flows[i];
		unsigned before = 0;

		for (unsigned j = 0; j < i; j++)
			before += ctx->flows[j].src == f->src;
		f->txq = (uint16_t)(before % ctx->vms[f->src].nq);
		build_template(ctx, f);
		if (f->dst >= 0 || f->reflect) {
			/* received at its destination, or back at its source from the guest */
			f->rx_idx = f->reflect ? rx_lookup(ctx, f->src, &f->dst_mac, f->id, ctx->run_id)
					       : rx_lookup(ctx, (uint16_t)f->dst,
							   &ctx->vms[f->src].mac, f->id,
							   ctx->run_id);
			if (f->rx_idx < 0)
				return -ENOSPC;
			ctx->rx[f->rx_idx].flow = (int)i;
		}
	}
	return 0;
}

/* A refusal ended (a send taken whole, or sending stopped): one event with its span. */
static void
refusal_end(struct probe_ctx *ctx, struct probe_flow *f)
{
	struct probe_event ev;

	if (f->ref_n == 0)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.type = PROBE_EV_REFUSED;
	ev.flow = (uint16_t)(f - ctx->flows);
	ev.reason = f->ref_pool;
	ev.gap.start_ns = f->ref_start_ns;
	ev.gap.end_ns = f->ref_last_ns;
	ev.gap.seq_before = f->ref_first_seq;
	ev.gap.seq_after = f->ref_n;
	probe_event_push(ctx, &ev);
	f->ref_n = 0;
}

/* Rate mode: frames first..first+n-1 of f were refused now (pool: no mbufs). */
static void
refused(struct probe_ctx *ctx, struct probe_flow *f, uint64_t first, unsigned n, uint64_t now,
	bool pool)
{
	struct probe_vm *vm = &ctx->vms[f->src];

	PROBE_ADD(f->tx_refused, n);
	PROBE_ADD(vm->tx_refused, n);
	if (f->ref_n == 0) {
		f->ref_first_seq = first;
		f->ref_start_ns = now;
		f->ref_pool = false;
	}
	f->ref_n += n;
	f->ref_last_ns = now;
	f->ref_pool |= pool;
}

/* Sending stopped: report the refusals still under way. */
void
probe_tx_refusals_end(struct probe_ctx *ctx)
{
	for (unsigned i = 0; i < ctx->n_flows; i++)
		refusal_end(ctx, &ctx->flows[i]);
}

/* Build n frames of flow f and offer them to its VM's port. Rate mode: every built frame is
 * offered and consumes its sequence number, even when the ring (or the pool) refuses it, so
 * the receiver sees it as lost (RFC 6201). Flood mode: a refusal is back-pressure, not loss,
 * so only accepted frames consume sequence numbers. */
static void
send_frames(struct probe_ctx *ctx, struct probe_flow *f, unsigned n, uint64_t now, bool flood)
{
	struct rte_mbuf *m[PROBE_BURST_MAX];
	struct probe_vm *vm = &ctx->vms[f->src];
	uint32_t fs = ctx->cfg.frame_size;
	uint64_t seq = f->next_seq;
	unsigned sent;

	if (f->first_tx_ns == 0)
		PROBE_SET(f->first_tx_ns, now);
	if (rte_pktmbuf_alloc_bulk(ctx->pool, m, n) != 0) {
		if (!flood) {
			refused(ctx, f, seq, n, now, true);
			PROBE_SET(f->next_seq, seq + n);
		}
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		uint8_t *p = rte_pktmbuf_mtod(m[i], uint8_t *);
		uint64_t s = seq + i;

		memcpy(p, f->tmpl, fs);
		memcpy(p + PROBE_OFF_SEQ, &s, sizeof(s));
		memcpy(p + PROBE_OFF_TS, &now, sizeof(now));
		m[i]->data_len = (uint16_t)fs;
		m[i]->pkt_len = fs;
	}
	sent = rte_eth_tx_burst(vm->port, f->txq, m, (uint16_t)n);
	if (sent < n)
		rte_pktmbuf_free_bulk(m + sent, n - sent);
	PROBE_ADD(f->tx, sent);
	PROBE_ADD(vm->tx, sent);
	if (flood) {
		PROBE_ADD(f->tx_refused, n - sent);
		PROBE_ADD(vm->tx_refused, n - sent);
	} else if (sent < n) {
		refused(ctx, f, seq + sent, n - sent, now, false);
	} else {
		refusal_end(ctx, f);
	}
	PROBE_SET(f->next_seq, seq + (flood ? sent : n));
}

/* Every tick: for each paced flow, send what is due since its rate was last set
 * (pps x elapsed), at most PROBE_TICK_MAX now; the rest stays due for the next tick. A probe
 * that was not running for longer than PROBE_LAG_TICKS skips what it missed (unsent_late). A rate
 * change or a resume restarts the schedule from the current sequence number. */
void
probe_tx_tick(struct probe_ctx *ctx, uint64_t now)
{
	for (unsigned i = 0; i < ctx->n_flows; i++) {
		struct probe_flow *f = &ctx->flows[i];
		uint64_t pps = PROBE_GET(f->pps), el, due;

		if (PROBE_GET(f->paused)) {
			f->cur_paused = true;
			continue;
		}
		if (f->cur_paused && f->rx_idx >= 0)
			ctx->rx[f->rx_idx].resumed = true;
		if (pps == 0) {
			f->cur_pps = 0;
			f->cur_paused = false;
			continue;
		}
		if (f->cur_paused || pps != f->cur_pps || f->base_ns == 0) {
			f->base_ns = now;
			f->base_seq = f->next_seq;
			f->cur_pps = pps;
			f->cur_paused = false;
		}
		el = now - f->base_ns;
		due = f->base_seq + (el / 1000000000ull) * pps +
		      (el % 1000000000ull) * pps / 1000000000ull;
		/* how far behind the schedule may be and still be sent: two ticks' worth, and never
		 * less than a quarter of a ring (a low rate catches up a long stall whole) */
		uint64_t lag = RTE_MAX(PROBE_LAG_TICKS * ctx->cfg.tick_ns * pps / 1000000000ull + 1,
				       (uint64_t)PROBE_TICK_MAX);

		if (due > f->next_seq) {
			if (due - f->next_seq > lag) {
				/* those frames are never offered (no sequence numbers spent): the
				 * schedule starts again from here */
				PROBE_ADD(f->unsent_late, due - f->next_seq - lag);
				f->base_ns = now;
				f->base_seq = f->next_seq + lag;
				due = f->base_seq;
			}
		}
		for (uint64_t n = RTE_MIN(due - RTE_MIN(due, f->next_seq), lag); n > 0;) {
			unsigned b = (unsigned)RTE_MIN(n, (uint64_t)PROBE_BURST_MAX);

			send_frames(ctx, f, b, now, false);
			n -= b;
		}
	}
}

/* Every loop iteration: one burst for each unpaused flood flow (pps 0). Returns whether any
 * flood flow is active, in which case the loop must not sleep. */
bool
probe_tx_flood(struct probe_ctx *ctx, uint64_t now)
{
	bool any = false;

	for (unsigned i = 0; i < ctx->n_flows; i++) {
		struct probe_flow *f = &ctx->flows[i];

		if (PROBE_GET(f->pps) != 0 || PROBE_GET(f->paused))
			continue;
		any = true;
		send_frames(ctx, f, PROBE_FLOOD_BURST, now, true);
	}
	return any;
}

static inline bool
win_test_set(struct probe_rx *e, uint64_t seq)
{
	uint64_t bit = 1ull << (seq & 63), *w = &e->window[(seq / 64) % (PROBE_DUP_WINDOW / 64)];
	bool was = (*w & bit) != 0;

	*w |= bit;
	return was;
}

static inline void
win_clear(struct probe_rx *e, uint64_t seq)
{
	e->window[(seq / 64) % (PROBE_DUP_WINDOW / 64)] &= ~(1ull << (seq & 63));
}

/* A receive gap above --gap-us: keep it for the summary (first PROBE_GAPS_KEPT records,
 * first PROBE_GAP_SAMPLES lengths) and send it to the event writer. */
static void
record_gap(struct probe_ctx *ctx, struct probe_rx *e, int idx, uint64_t now, uint64_t seq,
	   uint64_t tx_ns)
{
	uint64_t n = e->gap_count, len = now - e->last_ns;
	struct probe_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = PROBE_EV_GAP;
	ev.vm = e->vm;
	ev.rx_idx = idx;
	ev.t_ns = now;
	ev.gap = (struct probe_gap){ e->last_ns, now, e->last_seq, seq, e->last_tx_ns, tx_ns };
	if (n < PROBE_GAPS_KEPT)
		e->gaps[n] = ev.gap;
	if (n < PROBE_GAP_SAMPLES)
		e->gap_us[n] = (uint32_t)RTE_MIN(len / 1000, (uint64_t)UINT32_MAX);
	if (len > e->max_gap_ns)
		PROBE_SET(e->max_gap_ns, len);
	__atomic_store_n(&e->gap_count, n + 1, __ATOMIC_RELEASE);
	probe_event_push(ctx, &ev);
}

/* Account one of our frames: gap check against the previous arrival, then duplicate /
 * reorder classification with a sliding bitmap over the last PROBE_DUP_WINDOW sequence
 * numbers (older arrivals cannot be checked for duplication and count as reordered).
 * Sequence accounting for lost vs delayed: a jump past max_seq leaves the numbers skipped
 * missing; a frame that arrives behind max_seq (not a duplicate) fills one of them and is
 * late. What is missing when the flow ends is lost (RFC 6201 frame loss, exactly). */
/* The first of a run of late frames (arrivals behind max_seq) as an event: when it was sent,
 * when it came, how far behind; the rest of the run only counts (reordered, late). */
static void
late_event(struct probe_ctx *ctx, struct probe_rx *e, int idx, uint64_t seq, uint64_t tx_ns,
	   uint64_t now)
{
	struct probe_event ev = { .type = PROBE_EV_LATE, .rx_idx = idx };

	if (e->in_late)
		return;
	e->in_late = true;
	ev.gap = (struct probe_gap){ tx_ns, now, e->max_seq, seq, tx_ns, tx_ns };
	probe_event_push(ctx, &ev);
}

/* A frame behind max_seq arrived that was missing: one fewer missing, one more late. */
static inline void
fill_missing(struct probe_rx *e)
{
	if (e->missing > 0)
		PROBE_SET(e->missing, e->missing - 1);
	PROBE_ADD(e->late, 1);
}

static void
rx_account(struct probe_ctx *ctx, struct probe_rx *e, int idx, uint64_t seq, uint64_t tx_ns,
	   uint64_t now)
{
	if (now > tx_ns) {
		uint64_t lat = now - tx_ns;
		PROBE_ADD(e->lat_sum_ns, lat);
		if (lat > e->lat_max_ns)
			PROBE_SET(e->lat_max_ns, lat);
	}
	if (e->received == 0) {
		PROBE_SET(e->first_ns, now);
		PROBE_SET(e->max_seq, seq);
		win_test_set(e, seq);
		goto out;
	}
	if (e->resumed)
		e->resumed = false; /* a pause is not a break */
	else if (now - e->last_ns > ctx->cfg.gap_ns)
		record_gap(ctx, e, idx, now, seq, tx_ns);
	if (seq > e->max_seq) {
		uint64_t d = seq - e->max_seq;
		e->in_late = false;
		PROBE_ADD(e->missing, d - 1);
		if (d >= PROBE_DUP_WINDOW)
			memset(e->window, 0, sizeof(e->window));
		else
			for (uint64_t s = e->max_seq + 1; s < seq; s++)
				win_clear(e, s);
		win_clear(e, seq);
		win_test_set(e, seq);
		PROBE_SET(e->max_seq, seq);
	} else if (e->max_seq - seq >= PROBE_DUP_WINDOW) {
		PROBE_ADD(e->reordered, 1);
		fill_missing(e);
		late_event(ctx, e, idx, seq, tx_ns, now);
	} else if (win_test_set(e, seq)) {
		PROBE_ADD(e->dup, 1);
	} else {
		PROBE_ADD(e->reordered, 1);
		fill_missing(e);
		late_event(ctx, e, idx, seq, tx_ns, now);
	}
out:
	PROBE_SET(e->last_ns, now);
	PROBE_SET(e->last_seq, seq);
	e->last_tx_ns = tx_ns;
	PROBE_ADD(e->received, 1);
}

/* Classify one received frame: ours (magic, UDP port) goes to its key's accounting, anything
 * else (RARP announcements, ARP, ...) is counted as foreign for the VM. */
static void
rx_one(struct probe_ctx *ctx, uint16_t vmi, struct rte_mbuf *m, uint64_t now)
{
	struct probe_vm *vm = &ctx->vms[vmi];
	const uint8_t *p = rte_pktmbuf_mtod(m, const uint8_t *);
	const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)p;
	const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(eth + 1);
	const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)(ip + 1);
	uint32_t magic;
	uint16_t flow_id;
	uint64_t seq, tx_ns;
	int idx;

	if (m->data_len < PROBE_HDR_LEN || eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
	    ip->version_ihl != RTE_IPV4_VHL_DEF || ip->next_proto_id != IPPROTO_UDP ||
	    (uint16_t)(rte_be_to_cpu_16(udp->dst_port) - PROBE_UDP_PORT) >= PROBE_UDP_PORTS)
		goto foreign;
	memcpy(&magic, p + PROBE_OFF_MAGIC, sizeof(magic));
	if (magic != rte_cpu_to_be_32(PROBE_MAGIC))
		goto foreign;
	memcpy(&flow_id, p + PROBE_OFF_FLOW, sizeof(flow_id));
	memcpy(&seq, p + PROBE_OFF_SEQ, sizeof(seq));
	memcpy(&tx_ns, p + PROBE_OFF_TS, sizeof(tx_ns));
	idx = rx_lookup(ctx, vmi, &eth->src_addr, rte_be_to_cpu_16(flow_id),
			rte_be_to_cpu_16(udp->src_port));
	if (idx < 0) {
		PROBE_ADD(vm->untracked, 1);
		return;
	}
	rx_account(ctx, &ctx->rx[idx], idx, seq, tx_ns, now);
	return;
foreign:
	PROBE_ADD(vm->foreign, 1);
}

/* Drain every VM's receive queue (bounded per call so one busy port cannot starve the rest
 * or the sender). Arrival time is taken once per burst. */
void
probe_rx_poll(struct probe_ctx *ctx, uint64_t now)
{
	struct rte_mbuf *m[RX_BURST];

	for (unsigned v = 0; v < ctx->n_vms; v++) {
		struct probe_vm *vm = &ctx->vms[v];

		if (PROBE_GET(vm->rx_pause_until_ns) > now)
			continue;
		for (uint16_t q = 0; q < vm->nq; q++) {
			for (int round = 0; round < RX_ROUNDS; round++) {
				uint16_t n = rte_eth_rx_burst(vm->port, q, m, RX_BURST);

				if (n == 0)
					break;
				if (round > 0 || q > 0)
					now = hl_now_ns();
				PROBE_ADD(vm->rx, n);
				for (uint16_t i = 0; i < n; i++)
					rx_one(ctx, (uint16_t)v, m[i], now);
				rte_pktmbuf_free_bulk(m, n);
				if (n < RX_BURST)
					break;
			}
		}
	}
}
