/* SPDX-License-Identifier: Apache-2.0
 * Stateless L2 forwarding stage: VM MACs are configured entries, uplink MACs are learned.
 *  - multicast/broadcast            -> flood
 *  - destination in the FDB         -> that port (never back to the source)
 *  - unknown, from a VM             -> the uplink, when there is one
 *  - unknown, from the uplink       -> drop
 *  - from the peer link (the host's other generation): only to this generation's VMs
 * Source MACs seen on the uplink are learned so fdb/export can carry them to a new generation.
 * Bursts are looked up in bulk (rte_hash pipelines the probes), at most 64 packets a call.
 */
#include "hitless_fwd.h"

#ifndef HITLESS_RELEASE
#define HITLESS_RELEASE "0.0.0"
#endif

/* Learn the senders of a burst from the uplink: one bulk lookup, then add only what is new
 * or moved (never a configured VM's address). */
static void
l2_learn(const struct hitless_fwd_env *env, struct rte_mbuf **pkts, uint16_t n)
{
	const struct rte_ether_addr *src[n];
	uint16_t port[n];
	uint8_t kind[n];
	uint64_t hit;

	for (uint16_t i = 0; i < n; i++)
		src[i] = &rte_pktmbuf_mtod(pkts[i], struct rte_ether_hdr *)->src_addr;
	hit = env->lookup_bulk(env->fdb, src, n, port, kind);
	for (uint16_t i = 0; i < n; i++)
		if (rte_is_unicast_ether_addr(src[i]) &&
		    (!(hit >> i & 1) || (port[i] != FWD_PORT_UPLINK && kind[i] != FWD_KIND_VM)))
			env->learn(env->fdb, src[i], FWD_PORT_UPLINK);
}

static void
l2_classify(const struct hitless_fwd_env *env, uint16_t src, struct rte_mbuf **pkts,
	    uint16_t n, uint16_t *dst)
{
	const struct rte_ether_addr *mac[n];
	uint16_t port[n];
	uint8_t kind[n];
	uint64_t hit;

	if (src == FWD_PORT_UPLINK)
		l2_learn(env, pkts, n);
	for (uint16_t i = 0; i < n; i++)
		mac[i] = &rte_pktmbuf_mtod(pkts[i], struct rte_ether_hdr *)->dst_addr;
	hit = env->lookup_bulk(env->fdb, mac, n, port, kind);
	for (uint16_t i = 0; i < n; i++) {
		if (!rte_is_unicast_ether_addr(mac[i]))
			dst[i] = FWD_DST_FLOOD;
		else if (hit >> i & 1)
			dst[i] = port[i] == src ? FWD_DST_DROP : port[i];
		else if (src != FWD_PORT_UPLINK && src != FWD_PORT_PEER && env->has_uplink)
			dst[i] = FWD_PORT_UPLINK;
		else
			dst[i] = FWD_DST_DROP;
	}
}

const struct hitless_fwd_ops hitless_fwd_ops = {
	.abi = HITLESS_FWD_ABI,
	.name = "l2",
	.version = HITLESS_RELEASE,
	.classify = l2_classify,
};
