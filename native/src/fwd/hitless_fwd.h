/* SPDX-License-Identifier: Apache-2.0
 * The forwarding stage's ABI. hitless-dp keeps all state (FDB, ports, counters) and calls the
 * stage through this versioned ops table, which it loads from a separately built shared object
 * at start. Because the stage holds no state of its own, a later release can swap it in place
 * inside a running generation (the Baidu approach) without any state migration.
 */
#ifndef HITLESS_FWD_H
#define HITLESS_FWD_H

#include <stdint.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#define HITLESS_FWD_ABI 1
#define HITLESS_FWD_SYMBOL "hitless_fwd_ops"

/* Port indices: 0 is the uplink, 1..N the VM slots. Special destinations below. */
#define FWD_PORT_UPLINK 0
#define FWD_PORT_PEER 0xfffd  /* the link to the host's other generation (during an upgrade) */
#define FWD_DST_DROP 0xffff   /* no destination: drop, counted as no_dest */
#define FWD_DST_FLOOD 0xfffe  /* broadcast/multicast: every port but the source */

enum fwd_kind { FWD_KIND_VM = 1, FWD_KIND_LEARNED = 2 };

/* What the datapath lends the stage for one burst. */
struct hitless_fwd_env {
	void *fdb;
	int (*lookup)(void *fdb, const struct rte_ether_addr *mac, uint16_t *port,
		      uint8_t *kind);
	/* Look up n (<= 64) addresses at once; bit i of the returned mask is set when macs[i]
	 * was found, and then port[i]/kind[i] hold its entry. */
	uint64_t (*lookup_bulk)(void *fdb, const struct rte_ether_addr **macs, uint16_t n,
				uint16_t *port, uint8_t *kind);
	void (*learn)(void *fdb, const struct rte_ether_addr *mac, uint16_t port);
	int has_uplink;
};

struct hitless_fwd_ops {
	uint32_t abi;          /* HITLESS_FWD_ABI */
	const char *name;      /* e.g. "l2" */
	const char *version;   /* release stamp the stage was built with */
	/* Choose a destination for each of the n packets that arrived on port src:
	 * a port index, FWD_DST_DROP or FWD_DST_FLOOD. May learn source addresses. */
	void (*classify)(const struct hitless_fwd_env *env, uint16_t src,
			 struct rte_mbuf **pkts, uint16_t n, uint16_t *dst);
};

#endif
