/* SPDX-License-Identifier: Apache-2.0
 * The packet loop: one lcore polls the uplink and every connected VM, asks the forwarding
 * stage where each packet goes, and enqueues it. No syscalls, locks, malloc or logging here
 * except the bounded idle nap.
 *
 * Towards a guest, packets go through a per-VM pending queue: whatever the guest's RX ring
 * does not take now is retried on the following iterations (in order) for up to retry_us, so a
 * burst that arrives while the guest is briefly not reading is not lost. Only past that bound,
 * or with the pending queue full, is a packet dropped and counted as ring_full.
 */
#include <string.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_vhost.h>

#include "dp.h"

#define VIRTIO_RXQ 0
#define VIRTIO_TXQ 1

static inline bool
ld(const bool *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
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
	e = __atomic_load_n(&dp.epoch, __ATOMIC_ACQUIRE);
	while (__atomic_load_n(&dp.epoch, __ATOMIC_ACQUIRE) < e + 2 &&
	       __atomic_load_n(&dp.loop_running, __ATOMIC_ACQUIRE) && hl_now_ns() < deadline)
		hl_sleep_ns(10000);
}

static void
drop_pending(struct dp_vm *vm)
{
	vm->st.drop_ring_full += vm->pend_n;
	rte_pktmbuf_free_bulk(vm->pend, vm->pend_n);
	vm->pend_n = 0;
}

/* Try to move the VM's pending packets into its RX ring. */
static void
flush_vm(struct dp_vm *vm, uint64_t now)
{
	uint16_t done = 0;

	while (done < vm->pend_n) {
		uint16_t want = RTE_MIN(vm->pend_n - done, DP_BURST);
		uint16_t n = rte_vhost_enqueue_burst(vm->vid, VIRTIO_RXQ, vm->pend + done, want);
		for (uint16_t i = 0; i < n; i++)
			vm->st.tx_bytes += rte_pktmbuf_pkt_len(vm->pend[done + i]);
		done += n;
		if (n < want) {
			vm->st.tx_retries++;
			break;
		}
	}
	if (done > 0) {
		vm->st.tx_pkts += done;
		vm->st.last_tx_ns = now;
		rte_pktmbuf_free_bulk(vm->pend, done);
		memmove(vm->pend, vm->pend + done, (vm->pend_n - done) * sizeof(vm->pend[0]));
		vm->pend_n -= done;
		vm->pend_since_ns = now;
	}
	if (vm->pend_n > 0 && now - vm->pend_since_ns > (uint64_t)dp.retry_us * 1000)
		drop_pending(vm);
}

/* Queue one packet (one reference) for a VM, or drop it with the right reason. Returns true
 * when queued. Falls back to the uplink for a VM that another generation serves. */
static bool
queue_vm(struct dp_vm *vm, struct rte_mbuf *m, uint64_t now, struct rte_mbuf **up, uint16_t *up_n)
{
	if (!ld(&vm->ready)) {
		if (dp.uplink_port >= 0 && *up_n < DP_BURST * 4) {
			up[(*up_n)++] = m;
			return true;
		}
		vm->st.drop_not_ready++;
	} else if (__atomic_load_n(&vm->stall_until_ns, __ATOMIC_RELAXED) > now) {
		vm->st.drop_stalled++;
	} else if (vm->pend_n == DP_PEND_MAX) {
		vm->st.drop_ring_full++;
	} else {
		if (vm->pend_n == 0)
			vm->pend_since_ns = now;
		vm->pend[vm->pend_n++] = m;
		return true;
	}
	rte_pktmbuf_free(m);
	return false;
}

static void
send_uplink(struct rte_mbuf **up, uint16_t n)
{
	uint16_t sent = 0;

	for (int tries = 0; sent < n && tries < 4; tries++)
		sent += rte_eth_tx_burst((uint16_t)dp.uplink_port, 0, up + sent, n - sent);
	dp.us.tx_pkts += sent;
	if (sent < n) {
		dp.us.drop_tx += n - sent;
		rte_pktmbuf_free_bulk(up + sent, n - sent);
	}
}

/* Forward a burst that arrived on port src. */
static void
forward(uint16_t src, struct rte_mbuf **pkts, uint16_t n, uint64_t now, struct rte_mbuf **up,
	uint16_t *up_n)
{
	const struct hitless_fwd_ops *ops = __atomic_load_n(&dp.fwd, __ATOMIC_ACQUIRE);
	const struct hitless_fwd_env env = {
		.fdb = dp.fdb,
		.lookup = dp_fdb_lookup,
		.lookup_bulk = dp_fdb_lookup_bulk,
		.learn = dp_fdb_learn,
		.has_uplink = dp.uplink_port >= 0,
	};
	uint16_t dst[DP_BURST];

	ops->classify(&env, src, pkts, n, dst);
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		uint16_t d = dst[i];

		if (d == FWD_DST_FLOOD) {
			dp.ls.flood_pkts++;
			for (uint16_t s = 0; s < DP_MAX_VMS; s++) {
				struct dp_vm *vm = &dp.vms[s];
				if (s + 1 == src || !ld(&vm->in_use) || !ld(&vm->ready))
					continue;
				rte_mbuf_refcnt_update(m, 1);
				queue_vm(vm, m, now, up, up_n);
			}
			if (src != FWD_PORT_UPLINK && dp.uplink_port >= 0 &&
			    *up_n < DP_BURST * 4) {
				dp.us.tx_bytes += rte_pktmbuf_pkt_len(m);
				up[(*up_n)++] = m;
			} else {
				rte_pktmbuf_free(m);
			}
		} else if (d == FWD_PORT_UPLINK) {
			if (dp.uplink_port >= 0 && *up_n < DP_BURST * 4) {
				dp.us.tx_bytes += rte_pktmbuf_pkt_len(m);
				up[(*up_n)++] = m;
			} else {
				dp.us.drop_tx++;
				rte_pktmbuf_free(m);
			}
		} else if (d >= 1 && d <= DP_MAX_VMS && ld(&dp.vms[d - 1].in_use)) {
			queue_vm(&dp.vms[d - 1], m, now, up, up_n);
		} else {
			if (src == FWD_PORT_UPLINK)
				dp.us.drop_no_dest++;
			else
				dp.vms[src - 1].st.drop_no_dest++;
			rte_pktmbuf_free(m);
		}
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
	if (dp.uplink_port < 0) {
		rte_pktmbuf_free_bulk(m, n);
		return;
	}
	dp.us.announces += n;
	send_uplink(m, (uint16_t)n);
}

int
dp_loop(void *arg)
{
	struct rte_mbuf *pkts[DP_BURST];
	struct rte_mbuf *up[DP_BURST * 4];
	uint64_t last_busy_ns = hl_now_ns(), nap_ns = 10000;

	(void)arg;
	hl_tight_timer_slack();
	__atomic_store_n(&dp.loop_running, true, __ATOMIC_RELEASE);
	while (!dp.quit) {
		uint64_t t0 = rte_rdtsc();
		uint64_t now = hl_now_ns();
		uint32_t got = 0, pending = 0;
		uint16_t up_n = 0;

		__atomic_fetch_add(&dp.epoch, 1, __ATOMIC_ACQ_REL);
		dp.ls.iterations++;
		send_announcements();

		if (dp.uplink_port >= 0) {
			uint16_t n = rte_eth_rx_burst((uint16_t)dp.uplink_port, 0, pkts, DP_BURST);
			if (n > 0) {
				got += n;
				dp.us.rx_pkts += n;
				for (uint16_t i = 0; i < n; i++)
					dp.us.rx_bytes += rte_pktmbuf_pkt_len(pkts[i]);
				forward(FWD_PORT_UPLINK, pkts, n, now, up, &up_n);
			}
		}
		for (uint16_t s = 0; s < DP_MAX_VMS; s++) {
			struct dp_vm *vm = &dp.vms[s];
			uint16_t n;

			if (!ld(&vm->in_use) || !ld(&vm->ready) || ld(&vm->draining))
				continue;
			if (__atomic_load_n(&vm->stall_until_ns, __ATOMIC_RELAXED) > now)
				continue;
			n = rte_vhost_dequeue_burst(vm->vid, VIRTIO_TXQ, dp.pool, pkts, DP_BURST);
			if (n == 0)
				continue;
			got += n;
			vm->st.rx_pkts += n;
			vm->st.last_rx_ns = now;
			for (uint16_t i = 0; i < n; i++)
				vm->st.rx_bytes += rte_pktmbuf_pkt_len(pkts[i]);
			forward(dp_vm_port(vm), pkts, n, now, up, &up_n);
			if (up_n > DP_BURST * 3) {
				send_uplink(up, up_n);
				up_n = 0;
			}
		}
		if (up_n > 0)
			send_uplink(up, up_n);

		/* flush towards guests; a draining VM is done once nothing is left for it */
		for (uint16_t s = 0; s < DP_MAX_VMS; s++) {
			struct dp_vm *vm = &dp.vms[s];

			if (!ld(&vm->in_use) || !ld(&vm->ready))
				continue;
			if (vm->pend_n > 0)
				flush_vm(vm, now);
			pending += vm->pend_n;
			if (ld(&vm->draining) && vm->pend_n == 0)
				__atomic_store_n(&vm->drained, true, __ATOMIC_RELEASE);
		}

		/* adaptive idle: poll while packets come; once none came for idle_grace_us, nap
		 * in growing steps up to idle_max_us so an idle generation costs ~0 CPU */
		if (got > 0 || pending > 0) {
			dp.ls.busy_iterations++;
			dp.ls.busy_pkts += got;
			dp.ls.busy_cycles += rte_rdtsc() - t0;
			last_busy_ns = now;
			nap_ns = 10000;
		} else if (now - last_busy_ns > (uint64_t)dp.idle_grace_us * 1000) {
			dp.ls.idle_sleeps++;
			hl_sleep_ns(nap_ns);
			nap_ns = RTE_MIN(nap_ns * 2, (uint64_t)dp.idle_max_us * 1000);
		}
	}
	__atomic_store_n(&dp.loop_running, false, __ATOMIC_RELEASE);
	return 0;
}
