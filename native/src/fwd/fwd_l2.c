/* SPDX-License-Identifier: Apache-2.0
 * Stateless L2 forwarding stage: VM MACs are configured entries, uplink MACs are learned.
 *  - multicast/broadcast            -> flood
 *  - destination in the FDB         -> that port (never back to the source)
 *  - unknown, from a VM             -> the uplink, when there is one
 *  - unknown, from the uplink       -> drop
 * Source MACs seen on the uplink are learned so fdb/export can carry them to a new generation.
 */
#include "hitless_fwd.h"

#ifndef HITLESS_RELEASE
#define HITLESS_RELEASE "0.0.0"
#endif

static void
l2_classify(const struct hitless_fwd_env *env, uint16_t src, struct rte_mbuf **pkts,
	    uint16_t n, uint16_t *dst)
{
	for (uint16_t i = 0; i < n; i++) {
		const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(pkts[i], struct rte_ether_hdr *);
		uint16_t port;
		uint8_t kind;

		if (src == FWD_PORT_UPLINK && rte_is_unicast_ether_addr(&eth->src_addr))
			env->learn(env->fdb, &eth->src_addr, FWD_PORT_UPLINK);
		if (!rte_is_unicast_ether_addr(&eth->dst_addr))
			dst[i] = FWD_DST_FLOOD;
		else if (env->lookup(env->fdb, &eth->dst_addr, &port, &kind) == 0)
			dst[i] = port == src ? FWD_DST_DROP : port;
		else if (src != FWD_PORT_UPLINK && env->has_uplink)
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
