/* SPDX-License-Identifier: Apache-2.0
 * The forwarding stage's ABI. hitless-dp owns the forwarding table's storage (an rte_hash of
 * MAC -> one 64-bit word, which outlives any stage) and calls the stage through this versioned
 * ops table, loaded from a separately built shared object. What a word means is the stage's
 * own state layout: the stage encodes and decodes it, and a stage whose layout differs from
 * the running one's carries a migrate hook that converts each word. That is what lets a later
 * release swap its stage in place inside a running generation (lib/swap, the Baidu approach):
 * the datapath stops its loop at an iteration boundary, converts the table when the layouts
 * differ, switches the ops table and goes on, all on the loop's own lcore.
 */
#ifndef HITLESS_FWD_H
#define HITLESS_FWD_H

#include <stdint.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#define HITLESS_FWD_ABI 2
#define HITLESS_FWD_SYMBOL "hitless_fwd_ops"

/* Port indices: 0 is the uplink, 1..N the VM slots. Special destinations below. */
#define FWD_PORT_UPLINK 0
#define FWD_PORT_PEER 0xfffd  /* the link to the host's other generation (during an upgrade) */
#define FWD_DST_DROP 0xffff   /* no destination: drop, counted as no_dest */
#define FWD_DST_FLOOD 0xfffe  /* broadcast/multicast: every port but the source */

enum fwd_kind { FWD_KIND_VM = 1, FWD_KIND_LEARNED = 2 };

/* One forwarding-table entry as the datapath sees it, whatever the stage's layout. */
struct hitless_fwd_entry {
	uint16_t port;
	uint8_t kind;      /* enum fwd_kind */
	uint32_t seen_s;   /* learned entries: when last seen (CLOCK_MONOTONIC s); 0: not kept */
};

/* What the datapath lends the stage for one burst. */
struct hitless_fwd_env {
	void *fdb;
	/* Look up n (<= 64) addresses at once; bit i of the returned mask is set when macs[i]
	 * was found, and then word[i] holds its entry in this stage's layout. */
	uint64_t (*lookup_bulk)(void *fdb, const struct rte_ether_addr **macs, uint16_t n,
				uint64_t *word);
	/* Add or replace an entry (0, or -ENOSPC when the table is full). */
	int (*store)(void *fdb, const struct rte_ether_addr *mac, uint64_t word);
	uint64_t now_ns;   /* CLOCK_MONOTONIC at the start of this loop iteration */
	int has_uplink;
};

struct hitless_fwd_ops {
	uint32_t abi;          /* HITLESS_FWD_ABI */
	uint32_t layout;       /* version of the word layout below; starts at 1 */
	const char *name;      /* e.g. "l2" */
	const char *version;   /* release stamp the stage was built with */
	/* Choose a destination for each of the n packets that arrived on port src:
	 * a port index, FWD_DST_DROP or FWD_DST_FLOOD. May learn source addresses. */
	void (*classify)(const struct hitless_fwd_env *env, uint16_t src,
			 struct rte_mbuf **pkts, uint16_t n, uint16_t *dst);
	uint64_t (*encode)(const struct hitless_fwd_entry *e);
	void (*decode)(uint64_t word, struct hitless_fwd_entry *e);
	/* Convert one word from layout `from` to layout `to`, one of which is this stage's own.
	 * 0 and *out; -ENOTSUP when this stage does not know the other layout; any other
	 * negative errno when this entry cannot be converted (the swap is then refused and
	 * nothing changes). NULL: the stage converts nothing. now_s: for fields a layout adds. */
	int (*migrate)(uint32_t from, uint32_t to, uint64_t word, uint32_t now_s, uint64_t *out);
};

#endif
