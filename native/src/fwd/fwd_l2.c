/* SPDX-License-Identifier: Apache-2.0
 * L2 forwarding stage: VM MACs are configured entries, uplink MACs are learned.
 *  - multicast/broadcast            -> flood
 *  - destination in the FDB         -> that port (never back to the source)
 *  - unknown, from a VM             -> the uplink, when there is one
 *  - unknown, from the uplink       -> drop
 *  - from the peer link (the host's other generation): only to this generation's VMs
 * Source MACs seen on the uplink are learned so fdb/export can carry them to a new generation.
 * Bursts are looked up in bulk (rte_hash pipelines the probes), at most 64 packets a call,
 * each run of packets to one address once.
 *
 * State layouts of an FDB word (port in bits 0-15, kind in 16-23 in both):
 *  1  (releases up to 1.0.x)  nothing else;
 *  2  (since 1.1.0)           bits 32-63: when a learned address was last seen, in seconds of
 *                             CLOCK_MONOTONIC, refreshed at most once a second, so fdb/export
 *                             can tell a live uplink host from a stale one.
 * FWD_L2_LAYOUT selects the layout built (meson option fwd_layout); the layout-2 stage
 * converts words 1 -> 2 (stamped with the swap time) and 2 -> 1 (rollback).
 */
#include <errno.h>

#include "hitless_fwd.h"

#ifndef HITLESS_RELEASE
#define HITLESS_RELEASE "0.0.0"
#endif
#ifndef FWD_L2_LAYOUT
#define FWD_L2_LAYOUT 2
#endif
#if FWD_L2_LAYOUT != 1 && FWD_L2_LAYOUT != 2
#error "FWD_L2_LAYOUT must be 1 or 2"
#endif

#define BASE_MASK 0xffffffull /* port and kind: the part both layouts share */

static uint64_t
l2_encode(const struct hitless_fwd_entry *e)
{
	uint64_t w = (uint64_t)e->port | (uint64_t)e->kind << 16;

#if FWD_L2_LAYOUT == 2
	if (e->kind == FWD_KIND_LEARNED)
		w |= (uint64_t)e->seen_s << 32;
#endif
	return w;
}

static void
l2_decode(uint64_t w, struct hitless_fwd_entry *e)
{
	e->port = (uint16_t)(w & 0xffff);
	e->kind = (uint8_t)(w >> 16);
	e->seen_s = FWD_L2_LAYOUT == 2 ? (uint32_t)(w >> 32) : 0;
}

#if FWD_L2_LAYOUT == 2
static int
l2_migrate(uint32_t from, uint32_t to, uint64_t w, uint32_t now_s, uint64_t *out)
{
	uint8_t kind = (uint8_t)(w >> 16);

	if (kind != FWD_KIND_VM && kind != FWD_KIND_LEARNED)
		return -EINVAL;
	if (from == 1 && to == 2) {
		*out = (w & BASE_MASK) | (kind == FWD_KIND_LEARNED ? (uint64_t)now_s << 32 : 0);
		return 0;
	}
	if (from == 2 && to == 1) {
		*out = w & BASE_MASK;
		return 0;
	}
	return -ENOTSUP;
}
#endif

/* Learn the senders of a burst from the uplink: one bulk lookup, then store only what is
 * new, moved, or (layout 2) last stamped in an earlier second; never a configured VM. */
static void
l2_learn(const struct hitless_fwd_env *env, struct rte_mbuf **pkts, uint16_t n)
{
	const struct rte_ether_addr *src[n];
	uint64_t word[n];
	uint32_t now_s = (uint32_t)(env->now_ns / 1000000000ull);
	uint64_t hit;

	for (uint16_t i = 0; i < n; i++)
		src[i] = &rte_pktmbuf_mtod(pkts[i], struct rte_ether_hdr *)->src_addr;
	hit = env->lookup_bulk(env->fdb, src, n, word);
	for (uint16_t i = 0; i < n; i++) {
		struct hitless_fwd_entry e = { .port = FWD_PORT_UPLINK, .kind = FWD_KIND_LEARNED,
					       .seen_s = now_s };
		struct hitless_fwd_entry old;

		if (!rte_is_unicast_ether_addr(src[i]))
			continue;
		if (hit >> i & 1) {
			l2_decode(word[i], &old);
			if (old.kind == FWD_KIND_VM ||
			    (old.port == FWD_PORT_UPLINK &&
			     (FWD_L2_LAYOUT == 1 || old.seen_s == e.seen_s)))
				continue;
		}
		env->store(env->fdb, src[i], l2_encode(&e));
	}
}

static void
l2_classify(const struct hitless_fwd_env *env, uint16_t src, struct rte_mbuf **pkts,
	    uint16_t n, uint16_t *dst)
{
	const struct rte_ether_addr *mac[n], *uniq[n];
	uint16_t at[n]; /* packet i's address is uniq[at[i]] */
	uint64_t word[n];
	uint64_t hit;
	uint16_t u = 0;

	if (src == FWD_PORT_UPLINK)
		l2_learn(env, pkts, n);
	/* a run of packets to one address (a burst of one flow: the usual case) is looked up
	 * once */
	for (uint16_t i = 0; i < n; i++) {
		mac[i] = &rte_pktmbuf_mtod(pkts[i], struct rte_ether_hdr *)->dst_addr;
		if (u == 0 || !rte_is_same_ether_addr(mac[i], uniq[u - 1]))
			uniq[u++] = mac[i];
		at[i] = u - 1;
	}
	hit = env->lookup_bulk(env->fdb, uniq, u, word);
	for (uint16_t i = 0; i < n; i++) {
		uint16_t port = (uint16_t)(word[at[i]] & 0xffff);

		if (!rte_is_unicast_ether_addr(mac[i]))
			dst[i] = FWD_DST_FLOOD;
		else if (hit >> at[i] & 1)
			dst[i] = port == src ? FWD_DST_DROP : port;
		else if (src != FWD_PORT_UPLINK && src != FWD_PORT_PEER && env->has_uplink)
			dst[i] = FWD_PORT_UPLINK;
		else
			dst[i] = FWD_DST_DROP;
	}
}

const struct hitless_fwd_ops hitless_fwd_ops = {
	.abi = HITLESS_FWD_ABI,
	.layout = FWD_L2_LAYOUT,
	.name = "l2",
	.version = HITLESS_RELEASE,
	.classify = l2_classify,
	.encode = l2_encode,
	.decode = l2_decode,
#if FWD_L2_LAYOUT == 2
	.migrate = l2_migrate,
#endif
};
