/* SPDX-License-Identifier: Apache-2.0
 * The packet loop: one lcore polls the external ports (uplink, peer link) and every connected
 * VM, asks the forwarding stage where each packet goes, and delivers it. No syscalls, locks,
 * malloc or logging here except the bounded idle nap.
 *
 * Towards a guest, packets go through a per-VM pending queue: whatever the guest's RX ring
 * does not take now is retried on the following iterations (in order) for up to retry_us, so a
 * burst that arrives while the guest is briefly not reading is not lost. Only past that bound,
 * or with the pending queue full, is a packet dropped and counted as ring_full.
 *
 * A forwarding stage swap (fwdlib.c) is made by this loop itself at the top of an iteration.
 *
 * During an upgrade a host's VMs are split between two generations joined by the peer link.
 * A packet for a configured VM that this generation does not serve goes over the peer link
 * (queue 0). A packet that arrives over it for a VM this generation does not serve either:
 *  - waits in the VM's pending queue when the VM is on its way here — the keeper has connected
 *    and the device has not started: it left the other side mid-handoff — for up to
 *    transit_us (a handoff slowed down by a busy host must not turn into loss);
 *  - otherwise goes back once, on queue 1, to the other side, which may be where the VM is
 *    arriving; what comes back on queue 1 is never returned again, so nothing loops.
 */
#define _GNU_SOURCE /* sched_getcpu */
#include <linux/futex.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_hash_crc.h>
#include <rte_vhost.h>

#include "dp.h"

#define EXT_BUF (DP_BURST * 4)

/* Transmit staging for one queue of an external port, filled during one iteration. */
struct ext_tx {
	struct dp_ext *ext;
	uint16_t queue;
	struct rte_mbuf *buf[EXT_BUF];
	uint16_t n;
};

/* The staging of one iteration: uplink, peer link, and the peer link's return queue. */
struct txs {
	struct ext_tx up, peer, ret;
};

static inline bool
ld(const bool *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

void
dp_wake(void)
{
	__atomic_fetch_add(&dp.wake, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &dp.wake, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* The loop's sleep while it serves no VM: until dp_wake() (or the bound). seen: the wake word
 * read at the top of the iteration, so a wake that came since is never slept through. */
static void
deep_sleep(uint32_t seen, uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull) };

	syscall(SYS_futex, &dp.wake, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
}

/* Wait until the loop has started two iterations after now, i.e. every iteration that could
 * have seen the state before the caller's change has finished. */
void
dp_quiesce(void *unused)
{
	uint64_t e;
	uint64_t deadline = hl_now_ns() + 2000000000ull;

	(void)unused;
	if (!__atomic_load_n(&dp.loop_running, __ATOMIC_ACQUIRE))
		return;
	dp_wake();
	e = __atomic_load_n(&dp.epoch, __ATOMIC_ACQUIRE);
	while (__atomic_load_n(&dp.epoch, __ATOMIC_ACQUIRE) < e + 2 &&
	       __atomic_load_n(&dp.loop_running, __ATOMIC_ACQUIRE) && hl_now_ns() < deadline)
		hl_sleep_ns(10000);
}

static void
drop_pending(struct dp_vm *vm, uint64_t *counter)
{
	*counter += vm->pend_n;
	dp_frames_out(vm->pend_n);
	rte_pktmbuf_free_bulk(vm->pend, vm->pend_n);
	vm->pend_n = 0;
}

/* The queue pairs whose ring of this direction the guest runs (bit q = pair q); a device
 * that said nothing yet is served on pair 0, as a single-queue guest is. */
static inline uint32_t
running(const uint32_t *mask)
{
	uint32_t m = __atomic_load_n(mask, __ATOMIC_ACQUIRE);

	return m != 0 ? m : 1;
}

/* The guest receive queue for a packet: the same for every packet of a flow (so the guest sees
 * a flow in order, on one queue), spread over the queues the guest runs. */
static uint16_t
pick_rxq(uint32_t mask, const struct rte_mbuf *m)
{
	const uint8_t *p = rte_pktmbuf_mtod(m, const uint8_t *);
	uint32_t h, k;

	if (rte_is_power_of_2(mask)) /* one queue: nothing to choose */
		return (uint16_t)rte_bsf32(mask);
	/* MACs, and for IPv4 the addresses and the first 4 bytes of its payload (ports) */
	h = rte_hash_crc(p, RTE_ETHER_ADDR_LEN * 2, 0);
	if (rte_pktmbuf_data_len(m) >= 14 + 20 + 4 && p[12] == 0x08 && p[13] == 0x00)
		h = rte_hash_crc(p + 14 + 12, 8 + 4, h);
	k = h % (uint32_t)__builtin_popcount(mask);
	while (k-- > 0)
		mask &= mask - 1; /* drop the lowest set bits until the chosen one is lowest */
	return (uint16_t)rte_bsf32(mask);
}

/* Try to move the VM's pending packets into its RX rings: each run of packets for the same
 * receive queue in one burst. Order is kept per queue (a flow always maps to one queue): a queue
 * whose ring is full keeps its packets, in order, while the other queues' packets go on (a guest
 * vCPU that stops reading one queue does not hold up the others). */
static void
flush_vm(struct dp_vm *vm, uint64_t now)
{
	uint32_t rxq = running(&vm->rxq_ready);
	bool one = rte_is_power_of_2(rxq);
	uint32_t full = 0; /* queues whose ring filled up in this flush */
	uint16_t i = 0, keep = 0, done = 0;

	while (i < vm->pend_n) {
		uint16_t q = pick_rxq(rxq, vm->pend[i]);
		uint16_t want = 1;
		uint16_t n;

		if (full & (1u << q)) {
			vm->pend[keep++] = vm->pend[i++];
			continue;
		}
		while (i + want < vm->pend_n && want < DP_BURST &&
		       (one || pick_rxq(rxq, vm->pend[i + want]) == q))
			want++;
		n = rte_vhost_enqueue_burst(vm->vid, (uint16_t)(2 * q + VIRTIO_RXQ), vm->pend + i,
					    want);
		for (uint16_t k = 0; k < n; k++)
			vm->st.tx_bytes += rte_pktmbuf_pkt_len(vm->pend[i + k]);
		rte_pktmbuf_free_bulk(vm->pend + i, n);
		done += n;
		/* what did not fit stays, in order, ahead of anything later for its queue */
		for (uint16_t k = n; k < want; k++)
			vm->pend[keep++] = vm->pend[i + k];
		i += want;
		if (n < want) {
			vm->st.tx_retries++;
			full |= 1u << q;
			if (one)
				break;
		}
	}
	/* a single queue that filled up: the rest stays as it was, behind what did not fit */
	if (i < vm->pend_n) {
		memmove(vm->pend + keep, vm->pend + i, (vm->pend_n - i) * sizeof(vm->pend[0]));
		keep += vm->pend_n - i;
	}
	vm->pend_n = keep;
	if (done > 0) {
		dp_frames_out(done);
		vm->st.tx_pkts += done;
		vm->st.last_tx_ns = now;
		if (vm->st.first_tx_ns == 0)
			vm->st.first_tx_ns = now;
		vm->pend_since_ns = now;
	}
	if (vm->pend_n > 0 && now - vm->pend_since_ns > (uint64_t)dp.retry_us * 1000)
		drop_pending(vm, &vm->st.drop_ring_full);
}

static bool
ext_up(const struct dp_ext *e)
{
	return e->live >= 0 && e->link_up;
}

/* The start of an iteration: the port as it is now, for the whole iteration; its link state
 * looked at every millisecond. */
static void
ext_refresh(struct dp_ext *e, uint64_t now)
{
	struct rte_eth_link link;

	e->live = __atomic_load_n(&e->port, __ATOMIC_ACQUIRE);
	if (e->live < 0) {
		e->link_up = false;
		return;
	}
	if (now - e->link_checked_ns < 1000000)
		return;
	e->link_checked_ns = now;
	if (rte_eth_link_get_nowait((uint16_t)e->live, &link) == 0)
		e->link_up = link.link_status == RTE_ETH_LINK_UP;
}

/* Stage one packet for an external port; false (packet still ours) when there is no room. */
static bool
ext_stage(struct ext_tx *t, struct rte_mbuf *m)
{
	if (!ext_up(t->ext) || t->n == EXT_BUF)
		return false;
	t->ext->st.tx_bytes += rte_pktmbuf_pkt_len(m);
	t->buf[t->n++] = m;
	return true;
}

static void
ext_send(struct dp_ext *e, uint16_t queue, struct rte_mbuf **m, uint16_t n)
{
	uint16_t sent = 0;

	/* (a port cut since the frames were staged sends nothing: they are drops) */
	for (int tries = 0; e->live >= 0 && sent < n && tries < 4; tries++)
		sent += rte_eth_tx_burst((uint16_t)e->live, queue, m + sent, n - sent);
	e->st.tx_pkts += sent;
	if (e == &dp.peer)
		__atomic_fetch_add(&dp.hb->peer_tx, sent, __ATOMIC_RELAXED);
	dp_frames_out(n);
	if (sent < n) {
		e->st.drop_tx += n - sent;
		rte_pktmbuf_free_bulk(m + sent, n - sent);
	}
}

static void
ext_flush(struct ext_tx *t)
{
	if (t->n > 0)
		ext_send(t->ext, t->queue, t->buf, t->n);
	t->n = 0;
}

static void
hold(struct dp_vm *vm, struct rte_mbuf *m, uint64_t now)
{
	if (vm->pend_n == 0)
		vm->pend_since_ns = now;
	vm->pend[vm->pend_n++] = m;
}

static bool
hold_if_room(struct dp_vm *vm, struct rte_mbuf *m, uint64_t now)
{
	if (vm->pend_n == DP_PEND_MAX)
		return false;
	hold(vm, m, now);
	return true;
}

/*
 * The reordering fence. While a VM is served by the other generation, frames for it from this
 * side go over the peer link; when it arrives here, some may still be on their way round (over
 * to the other side and, the VM gone from there, back on the return queue). Newer frames of the
 * same flows must not overtake them: on arrival, if the peer link carried frames for the VM
 * lately, a marker frame for it follows them over the link and comes back behind them; until it
 * does (at most DP_FENCE_US), the VM's frames from this side wait in fence_q, after it they join
 * the pending queue behind everything that came back. The marker is never delivered to a guest.
 */
#define FENCE_ETHERTYPE 0x88b5 /* IEEE local experimental */
static const char fence_magic[8] = "HLFENCE1";

static bool
is_fence_marker(const struct rte_mbuf *m)
{
	const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);

	return unlikely(eth->ether_type == RTE_BE16(FENCE_ETHERTYPE)) &&
	       rte_pktmbuf_data_len(m) >= sizeof(*eth) + sizeof(fence_magic) &&
	       memcmp(eth + 1, fence_magic, sizeof(fence_magic)) == 0;
}

/* The direct frames that waited join the pending queue, behind what came back. */
static void
fence_release(struct dp_vm *vm, uint64_t now)
{
	for (uint16_t i = 0; i < vm->fence_n; i++)
		if (!hold_if_room(vm, vm->fence_q[i], now)) {
			vm->st.drop_ring_full++;
			dp_frames_out(1);
			rte_pktmbuf_free(vm->fence_q[i]);
		}
	vm->fence_n = 0;
	vm->fencing = false;
}

/* The VM has just arrived: fence if frames for it went over the peer link lately. */
static void
fence_check(struct dp_vm *vm, uint64_t now, struct txs *tx)
{
	struct rte_mbuf *m;
	struct rte_ether_hdr *eth;

	if (likely(!__atomic_load_n(&vm->fence_req, __ATOMIC_ACQUIRE)) ||
	    !__atomic_exchange_n(&vm->fence_req, false, __ATOMIC_ACQ_REL))
		return;
	if (vm->fencing || !ext_up(tx->peer.ext) || vm->peer_tx_ns == 0 ||
	    now - vm->peer_tx_ns > DP_FENCE_RECENT_NS || (m = rte_pktmbuf_alloc(dp.pool)) == NULL)
		return;
	dp_frames_in(1);
	eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	eth->dst_addr = vm->mac;
	eth->src_addr = vm->mac;
	eth->ether_type = RTE_BE16(FENCE_ETHERTYPE);
	memcpy(eth + 1, fence_magic, sizeof(fence_magic));
	memset((char *)(eth + 1) + sizeof(fence_magic), 0, 60 - sizeof(*eth) - sizeof(fence_magic));
	m->data_len = m->pkt_len = 60;
	if (!ext_stage(&tx->peer, m)) {
		dp_frames_out(1);
		rte_pktmbuf_free(m);
		return;
	}
	vm->fencing = true;
	vm->fence_deadline_ns = now + DP_FENCE_US * 1000ull;
	vm->st.fences++;
}

/* A marker: back here, it releases the VM's fence; arriving from the other side, it goes back
 * at once (behind whatever went back before it); from anywhere else it is dropped. */
static void
fence_marker(struct dp_vm *vm, struct rte_mbuf *m, uint16_t src, bool returned, uint64_t now,
	     struct txs *tx)
{
	if (src == FWD_PORT_PEER && returned) {
		if (vm->fencing)
			fence_release(vm, now);
	} else if (src == FWD_PORT_PEER && ext_stage(&tx->ret, m)) {
		return;
	}
	dp_frames_out(1);
	rte_pktmbuf_free(m);
}

/* Deliver one packet (one reference) to a VM, or send it on towards the generation that
 * serves the VM, or drop it with the reason counted. src/returned: where it came from. */
static void
to_vm(struct dp_vm *vm, struct rte_mbuf *m, uint16_t src, bool returned, uint64_t now,
      struct txs *tx)
{
	if (unlikely(is_fence_marker(m))) {
		fence_marker(vm, m, src, returned, now, tx);
		return;
	}
	if (!ld(&vm->ready)) {
		bool arriving = __atomic_load_n(&vm->arriving_vid, __ATOMIC_ACQUIRE) >= 0;

		if (src == FWD_PORT_PEER) {
			if (arriving ? hold_if_room(vm, m, now) : !returned && ext_stage(&tx->ret, m))
				return;
		} else if (ext_stage(&tx->peer, m)) {
			vm->peer_tx_ns = now;
			return;
		} else if (/* on its way here, or its generation died and it will fail over here */
			   ((arriving || dp.peer_fenced) && hold_if_room(vm, m, now)) ||
			   ext_stage(&tx->up, m)) {
			return;
		}
		vm->st.drop_not_ready++;
	} else if (__atomic_load_n(&vm->stall_until_ns, __ATOMIC_RELAXED) > now) {
		vm->st.drop_stalled++;
	} else if (fence_check(vm, now, tx), vm->fencing && src != FWD_PORT_PEER) {
		if (vm->fence_n < DP_PEND_MAX) {
			vm->fence_q[vm->fence_n++] = m;
			return;
		}
		vm->st.drop_ring_full++;
	} else if (hold_if_room(vm, m, now)) {
		return;
	} else {
		vm->st.drop_ring_full++;
	}
	dp_frames_out(1);
	rte_pktmbuf_free(m);
}

/* Broadcast/multicast: every local VM but the source; from a VM also the uplink and the peer
 * (the other generation floods to its own VMs only, and the fabric beyond the uplink). */
static void
flood(struct rte_mbuf *m, uint16_t src, uint64_t now, struct txs *tx)
{
	bool from_vm = src >= 1 && src <= DP_MAX_VMS;

	dp.ls.flood_pkts++;
	for (uint16_t s = 0; s < DP_MAX_VMS; s++) {
		struct dp_vm *vm = &dp.vms[s];
		if (s + 1 == src || !ld(&vm->in_use) || !ld(&vm->ready))
			continue;
		rte_mbuf_refcnt_update(m, 1);
		dp_frames_in(1);
		to_vm(vm, m, src, true, now, tx);
	}
	if (from_vm && ext_up(tx->peer.ext)) {
		rte_mbuf_refcnt_update(m, 1);
		dp_frames_in(1);
		if (!ext_stage(&tx->peer, m)) {
			dp_frames_out(1);
			rte_pktmbuf_free(m);
		}
	}
	if (!from_vm || !ext_stage(&tx->up, m)) {
		dp_frames_out(1);
		rte_pktmbuf_free(m);
	}
}

static uint64_t *
no_dest_counter(uint16_t src)
{
	if (src == FWD_PORT_UPLINK)
		return &dp.up.st.drop_no_dest;
	if (src == FWD_PORT_PEER)
		return &dp.peer.st.drop_no_dest;
	return &dp.vms[src - 1].st.drop_no_dest;
}

static void
flush_full(struct txs *tx)
{
	if (tx->up.n == EXT_BUF)
		ext_flush(&tx->up);
	if (tx->peer.n == EXT_BUF)
		ext_flush(&tx->peer);
	if (tx->ret.n == EXT_BUF)
		ext_flush(&tx->ret);
}

/* Forward a burst that arrived on port src (returned: on the peer link's return queue). */
static void
forward(uint16_t src, bool returned, struct rte_mbuf **pkts, uint16_t n, uint64_t now,
	struct txs *tx)
{
	const struct hitless_fwd_ops *ops = __atomic_load_n(&dp.fwd, __ATOMIC_ACQUIRE);
	const struct hitless_fwd_env env = {
		.fdb = dp.fdb,
		.lookup_bulk = dp_fdb_lookup_words,
		.store = dp_fdb_store,
		.now_ns = now,
		.has_uplink = ext_up(&dp.up),
	};
	uint16_t dst[DP_BURST];

	ops->classify(&env, src, pkts, n, dst);
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		uint16_t d = dst[i];

		if (d == FWD_DST_FLOOD) {
			flood(m, src, now, tx);
		} else if (d == FWD_PORT_UPLINK) {
			if (!ext_stage(&tx->up, m)) {
				dp.up.st.drop_tx++;
				dp_frames_out(1);
				rte_pktmbuf_free(m);
			}
		} else if (d >= 1 && d <= DP_MAX_VMS && ld(&dp.vms[d - 1].in_use)) {
			to_vm(&dp.vms[d - 1], m, src, returned, now, tx);
		} else {
			(*no_dest_counter(src))++;
			dp_frames_out(1);
			rte_pktmbuf_free(m);
		}
		flush_full(tx);
	}
}

/* Send what the control side queued (announcements) on the uplink. */
static void
send_announcements(void)
{
	struct rte_mbuf *m[8];
	unsigned int n = rte_ring_dequeue_burst(dp.announce_q, (void **)m, RTE_DIM(m), NULL);

	if (n == 0)
		return;
	dp_frames_in(n);
	if (!ext_up(&dp.up)) {
		dp_frames_out(n);
		rte_pktmbuf_free_bulk(m, n);
		return;
	}
	dp.up.st.announces += n;
	ext_send(&dp.up, 0, m, (uint16_t)n);
}

/* Poll every queue of an external port; returns packets received. */
static uint16_t
poll_ext(struct dp_ext *e, uint16_t src, uint64_t now, struct txs *tx)
{
	struct rte_mbuf *pkts[DP_BURST];
	uint16_t total = 0;

	if (e->live < 0)
		return 0;
	for (uint16_t q = 0; q < e->nq; q++) {
		uint16_t n = rte_eth_rx_burst((uint16_t)e->live, q, pkts, DP_BURST);
		if (n == 0)
			continue;
		/* (taken out of the link before counted in: a death between the two counts the
		 * frames in the link, never in both) */
		if (e == &dp.peer)
			__atomic_fetch_add(&dp.hb->peer_rx, n, __ATOMIC_RELAXED);
		dp_frames_in(n);
		total += n;
		e->st.rx_pkts += n;
		for (uint16_t i = 0; i < n; i++)
			e->st.rx_bytes += rte_pktmbuf_pkt_len(pkts[i]);
		forward(src, q == 1, pkts, n, now, tx);
	}
	return total;
}

/* Deliver what waits for the guests. A draining VM (its device is being stopped) is let go by
 * the loop itself once what it holds for the guest is delivered (or the bound is over): from
 * then on the loop does not touch its ring, so the stop can return at once. Packets held for
 * a VM that is not (yet) served here are dropped past the bound. Returns packets still held. */
static uint32_t
flush_all(uint64_t now)
{
	uint32_t pending = 0;

	for (uint16_t s = 0; s < DP_MAX_VMS; s++) {
		struct dp_vm *vm = &dp.vms[s];

		if (!ld(&vm->in_use) || (vm->pend_n == 0 && !ld(&vm->draining) && !vm->fencing))
			continue;
		/* a fence whose marker did not come back in time (or a VM that is leaving) */
		if (vm->fencing && (now > vm->fence_deadline_ns || ld(&vm->draining) || !ld(&vm->ready))) {
			vm->st.fence_timeouts += now > vm->fence_deadline_ns;
			fence_release(vm, now);
		}
		if (!ld(&vm->ready)) {
			vm->pend_for_arrival = true;
			if (now - vm->pend_since_ns > (uint64_t)dp.transit_us * 1000)
				drop_pending(vm, &vm->st.drop_not_ready);
		} else {
			/* what waited for the VM to arrive has its retry bound from now on */
			if (vm->pend_for_arrival)
				vm->pend_since_ns = now;
			vm->pend_for_arrival = false;
			if (vm->pend_n > 0)
				flush_vm(vm, now);
			if (ld(&vm->draining) && (vm->pend_n == 0 || now > vm->drain_deadline_ns)) {
				drop_pending(vm, &vm->st.drop_ring_full);
				__atomic_store_n(&vm->ready, false, __ATOMIC_RELEASE);
				__atomic_store_n(&vm->drained, true, __ATOMIC_RELEASE);
			}
		}
		pending += vm->pend_n + vm->fence_n;
	}
	return pending;
}

/* Make a stage swap: convert the FDB's words (all or none) and publish the new ops table.
 * Called by the loop between iterations, where nothing classified is waiting to be staged
 * (what waits in the pending queues has its port already). window_ns: the time no packet
 * moved because of it. */
static void
swap_run(struct dp_swap *sw)
{
	uint64_t t0 = rte_rdtsc();

	sw->taken_ns = hl_now_ns();
	if (dp_fdb_migrate(dp.fdb, sw->to, sw->conv, sw->now_s, &sw->mig) == 0)
		__atomic_store_n(&dp.fwd, sw->to, __ATOMIC_RELEASE);
	sw->window_ns = (rte_rdtsc() - t0) * 1000000000ull / rte_get_tsc_hz();
	__atomic_store_n(&sw->done, true, __ATOMIC_RELEASE);
}

/* The loop's side of a swap request: take it (the control thread may withdraw it). */
static inline void
take_swap(void)
{
	bool yes = true;

	if (unlikely(__atomic_load_n(&dp.swap.pending, __ATOMIC_ACQUIRE)) &&
	    __atomic_compare_exchange_n(&dp.swap.pending, &yes, false, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		swap_run(&dp.swap);
}

/* The loop's CPU clock: its thread's CPU time at wall time wall_ns (CLOCK_MONOTONIC). */
struct cpu_mark {
	uint64_t wall_ns, cpu_ns;
};

/* Count a stall of the loop (dp.h): [ready_ns, end_ns) with nothing polled; the CPU time the
 * thread got since mark, which is at most a millisecond before ready_ns. */
static void
note_stall(uint64_t ready_ns, uint64_t end_ns, const struct cpu_mark *mark, uint64_t cpu_ns)
{
	struct dp_loop_stats *ls = &dp.ls;
	uint64_t d = end_ns - ready_ns;
	uint64_t ran = RTE_MIN(cpu_ns - mark->cpu_ns, d);

	__atomic_store_n(&ls->stalls, ls->stalls + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&ls->stall_ns, ls->stall_ns + d, __ATOMIC_RELAXED);
	if (d > ls->stall_max_ns) {
		__atomic_store_n(&ls->stall_max_ns, d, __ATOMIC_RELAXED);
		__atomic_store_n(&ls->stall_max_at_ns, ready_ns, __ATOMIC_RELAXED);
	}
	if (d >= DP_STALL_KEEP_NS) {
		struct dp_stall *k = &ls->kept[ls->n_kept % DP_STALLS_KEPT];

		__atomic_store_n(&k->start_ns, ready_ns, __ATOMIC_RELAXED);
		__atomic_store_n(&k->dur_ns, d, __ATOMIC_RELAXED);
		__atomic_store_n(&k->ran_ns, ran, __ATOMIC_RELAXED);
		__atomic_store_n(&ls->n_kept, ls->n_kept + 1, __ATOMIC_RELEASE);
	}
}

int
dp_loop(void *arg)
{
	struct rte_mbuf *pkts[DP_BURST];
	struct txs tx = { .up = { .ext = &dp.up }, .peer = { .ext = &dp.peer },
			  .ret = { .ext = &dp.peer, .queue = 1 } };
	uint64_t last_busy_ns = hl_now_ns(), nap_ns = 10000, last_peer_ns = 0, last_yield_ns = 0;
	uint64_t win_ns = last_busy_ns, win_pkts = 0; /* the rate: frames in the current ~1 ms */
	bool hot = false; /* the last window's rate was over DP_HOT_PKTS_PER_MS: no nap */
	uint64_t peer_count = 0, peer_active_ns = 0; /* frames over the peer link, either way */
	bool share = false; /* another generation is at work on this core: take turns */
	uint64_t ready_ns = 0; /* when the loop was ready for this iteration (0: not measured) */
	struct cpu_mark mark = { 0, 0 };
	bool peer_drained = false; /* the dead peer's link read once after the fence */

	(void)arg;
	hl_tight_timer_slack();
	__atomic_store_n(&dp.hb->loop_cpu, (uint32_t)(sched_getcpu() + 1), __ATOMIC_RELEASE);
	__atomic_store_n(&dp.loop_running, true, __ATOMIC_RELEASE);
	while (!dp.quit) {
		uint64_t t0 = rte_rdtsc();
		uint64_t now = hl_now_ns();
		uint32_t got = 0, pending, live = 0;
		uint32_t seen = __atomic_load_n(&dp.wake, __ATOMIC_ACQUIRE);

		/* how long since the loop was ready for this iteration (dp.h): since the last
		 * one began, or since its nap was to end */
		if (ready_ns != 0 && now > ready_ns && now - ready_ns >= DP_STALL_NS) {
			uint64_t cpu = hl_thread_cpu_ns();

			note_stall(ready_ns, now, &mark, cpu);
			mark = (struct cpu_mark){ now, cpu };
		} else if (now >= mark.wall_ns + DP_STALL_NS) {
			/* the CPU clock is a system call: read about once a millisecond, not per
			 * iteration or nap (a mark up to 1 ms old counts that time as run: a stall
			 * is then taken for the host's only when it ran less than half of it) */
			mark = (struct cpu_mark){ now, hl_thread_cpu_ns() };
		}
		ready_ns = now;
		__atomic_fetch_add(&dp.epoch, 1, __ATOMIC_ACQ_REL);
		dp.hb->beat = dp.epoch;
		dp.ls.iterations++;
		take_swap();
		ext_refresh(&dp.up, now);
		ext_refresh(&dp.peer, now);
		/* the keeper found the other generation dead: nothing more goes into its link */
		dp.peer_fenced = __atomic_load_n(&dp.hb->peer_fenced, __ATOMIC_ACQUIRE) != 0;
		if (!dp.peer_fenced) {
			peer_drained = false;
		} else if (!peer_drained && dp.peer.live >= 0) {
			/* what the dead one had handed into the link is still in its ring: taken once
			 * and delivered, not lost (what stays there is the link's loss, heartbeat.h).
			 * Its link is down for sending meanwhile: nothing is staged back into it */
			dp.peer.link_up = false;
			for (int i = 0; i < 64 && poll_ext(&dp.peer, FWD_PORT_PEER, now, &tx) > 0; i++)
				;
		}
		if (dp.peer_fenced && !peer_drained) {
			/* the link's counts are final from here (nothing more is sent into it) */
			peer_drained = true;
			__atomic_store_n(&dp.hb->peer_fence_ack, 1, __ATOMIC_RELEASE);
		}
		if (dp.peer_fenced) {
			dp.peer.live = -1;
			dp.peer.link_up = false;
		}
		send_announcements();

		got += poll_ext(&dp.up, FWD_PORT_UPLINK, now, &tx);
		if (poll_ext(&dp.peer, FWD_PORT_PEER, now, &tx) > 0) {
			got++;
			last_peer_ns = now;
		}
		for (uint16_t s = 0; s < DP_MAX_VMS; s++) {
			struct dp_vm *vm = &dp.vms[s];
			uint16_t n;

			if (!ld(&vm->in_use))
				continue;
			/* a VM served here, or on its way here (a keeper pre-load): not deep idle */
			live += ld(&vm->ready) || __atomic_load_n(&vm->arriving_vid, __ATOMIC_RELAXED) >= 0;
			if (!ld(&vm->ready) || ld(&vm->draining))
				continue;
			if (__atomic_load_n(&vm->stall_until_ns, __ATOMIC_RELAXED) > now)
				continue;
			fence_check(vm, now, &tx);
			/* every transmit ring the guest runs */
			for (uint32_t txq = running(&vm->txq_ready); txq != 0; txq &= txq - 1) {
				uint16_t q = (uint16_t)rte_bsf32(txq);

				n = rte_vhost_dequeue_burst(vm->vid, (uint16_t)(2 * q + VIRTIO_TXQ),
							    dp.pool, pkts, DP_BURST);
				if (n == 0)
					continue;
				dp_frames_in(n);
				got += n;
				vm->st.rx_pkts += n;
				vm->st.last_rx_ns = now;
				if (vm->st.first_rx_ns == 0)
					vm->st.first_rx_ns = now;
				for (uint16_t i = 0; i < n; i++)
					vm->st.rx_bytes += rte_pktmbuf_pkt_len(pkts[i]);
				forward(dp_vm_port(vm), false, pkts, n, now, &tx);
			}
		}
		ext_flush(&tx.up);
		ext_flush(&tx.peer);
		ext_flush(&tx.ret);
		pending = flush_all(now);

		/* adaptive idle: poll while packets come; once none came for idle_grace_us, nap
		 * in growing steps up to idle_max_us, unless the rate is hot
		 * (DP_HOT_PKTS_PER_MS: frames come in bursts, and a late wake-up between two
		 * would overflow a ring). A generation that serves no VM at all (a standby, one
		 * retired and not yet stopped) sleeps up to idle_deep_ms instead, and dp_wake()
		 * ends that sleep when a VM arrives: a few wakeups a second, not thousands on
		 * the core another generation forwards on (unless frames came over the peer link
		 * in the last DP_PEER_QUIET_NS: then it forwards for the other generation).
		 * While another generation serves VMs from this core (the keeper says so:
		 * heartbeat.h co_serving, mid-upgrade) or frames crossed the peer link in the
		 * last DP_PEER_ACTIVE_NS (the other one is at work: returning a fence's marker,
		 * say), an empty iteration yields the core, and a busy loop does every
		 * DP_YIELD_NS: without it the two would take turns in scheduler slices of
		 * milliseconds, longer than a guest's ring lasts at 1 Mpps. Not every busy
		 * iteration: two busy loops would then switch at the rate of iterations, and the
		 * switches would eat the core. Never otherwise: a neighbour of another kind
		 * takes a yield as a whole slice. */
		win_pkts += got;
		{
			uint64_t pc = __atomic_load_n(&dp.hb->peer_tx, __ATOMIC_RELAXED) +
				      __atomic_load_n(&dp.hb->peer_rx, __ATOMIC_RELAXED);

			if (pc != peer_count) {
				peer_count = pc;
				peer_active_ns = now;
			}
		}
		share = __atomic_load_n(&dp.hb->co_serving, __ATOMIC_RELAXED) != 0 ||
			(peer_active_ns != 0 && now - peer_active_ns < DP_PEER_ACTIVE_NS);
		if (now - win_ns >= 1000000ull) {
			hot = win_pkts * 1000000ull >= (uint64_t)DP_HOT_PKTS_PER_MS * (now - win_ns);
			win_ns = now;
			win_pkts = 0;
		}
		if (got > 0 || pending > 0) {
			dp.ls.busy_iterations++;
			dp.ls.busy_pkts += got;
			dp.ls.busy_cycles += rte_rdtsc() - t0;
			last_busy_ns = now;
			nap_ns = 10000;
			if (dp.yield && share && now - last_yield_ns >= DP_YIELD_NS) {
				sched_yield();
				last_yield_ns = now;
			}
		} else if (!hot && now - last_busy_ns > (uint64_t)dp.idle_grace_us * 1000) {
			dp.ls.idle_sleeps++;
			/* a generation the other one sends through (its VMs' peers are here, or were)
			 * forwards for it: it naps, it does not sleep deep, while that traffic lasts */
			if (live == 0 && now - last_peer_ns > DP_PEER_QUIET_NS &&
			    !__atomic_load_n(&dp.swap.pending, __ATOMIC_ACQUIRE)) {
				deep_sleep(seen, (uint64_t)dp.idle_deep_ms * 1000000ull);
				ready_ns = 0; /* woken early or not: its end is not a deadline */
			} else {
				hl_sleep_ns(nap_ns);
				ready_ns = now + nap_ns;
			}
			nap_ns = RTE_MIN(nap_ns * 2, (uint64_t)dp.idle_max_us * 1000);
		} else if (dp.yield && share) {
			sched_yield();
			last_yield_ns = now;
		}
	}
	__atomic_store_n(&dp.loop_running, false, __ATOMIC_RELEASE);
	return 0;
}
