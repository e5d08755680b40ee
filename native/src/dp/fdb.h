/* SPDX-License-Identifier: Apache-2.0
 * The generation's forwarding table: MAC -> port index, with the entry's kind (configured VM
 * or learned on the uplink). Backed by rte_hash in lock-free read mode so the packet loop looks
 * up without locks while the control thread adds and deletes. Each address maps to one 64-bit
 * word in the forwarding stage's state layout (hitless_fwd.h): the table stores words, the
 * stage (the codec) says what they mean, and a stage swap converts them.
 */
#ifndef HITLESS_DP_FDB_H
#define HITLESS_DP_FDB_H

#include <stdint.h>
#include <jansson.h>
#include <rte_ether.h>

#include "ctl.h"
#include "hitless_fwd.h"

struct dp_fdb;

/* A table of up to `entries` addresses. Its words mean nothing until a codec is set: the
 * forwarding stage whose layout they are in (dp_fdb_set_codec, and dp_fdb_migrate). */
struct dp_fdb *dp_fdb_create(const char *name, uint32_t entries);
void dp_fdb_free(struct dp_fdb *fdb);
void dp_fdb_set_codec(struct dp_fdb *fdb, const struct hitless_fwd_ops *codec);

/* 0 and the decoded entry, or -ENOENT. */
int dp_fdb_lookup(struct dp_fdb *fdb, const struct rte_ether_addr *mac,
		  struct hitless_fwd_entry *e);
/* The stage's raw access (hitless_fwd_env): bulk lookup of n <= 64 words, and store. Safe
 * from the packet loop while the control thread adds and deletes. */
uint64_t dp_fdb_lookup_words(void *fdb, const struct rte_ether_addr **macs, uint16_t n,
			     uint64_t *word);
int dp_fdb_store(void *fdb, const struct rte_ether_addr *mac, uint64_t word);
/* Configure an entry (learned ones stamped now); a learned entry never replaces a VM entry
 * (-EEXIST). */
int dp_fdb_set(struct dp_fdb *fdb, const struct rte_ether_addr *mac, uint16_t port,
	       uint8_t kind);
/* Delete; quiesce(arg) is called before the slot is reused so no reader still sees it. */
int dp_fdb_del(struct dp_fdb *fdb, const struct rte_ether_addr *mac,
	       void (*quiesce)(void *), void *arg);
uint32_t dp_fdb_count(const struct dp_fdb *fdb);
/* aa:bb:cc:dd:ee:ff, lower case as Linux prints them, into buf[RTE_ETHER_ADDR_FMT_SIZE]. */
void dp_format_mac(char *buf, const struct rte_ether_addr *mac);

/* Which stage converts words from one layout to another: `to` when it knows `from`'s layout,
 * else `from` when it knows `to`'s; NULL when neither does. Same layout: `to`. */
const struct hitless_fwd_ops *dp_fdb_converter(const struct hitless_fwd_ops *from,
					       const struct hitless_fwd_ops *to);

/* Outcome of dp_fdb_migrate. */
struct dp_fdb_migration {
	uint32_t entries;    /* words converted (all of them, or none on failure) */
	int rc;              /* 0, or the converter's error */
	char mac[RTE_ETHER_ADDR_FMT_SIZE]; /* on failure: the entry that did not convert */
};

/* Re-encode every word from the codec's layout into to's with `conv` (dp_fdb_converter),
 * then make `to` the codec. Two passes: nothing is written unless every word converts.
 * Call only where nothing else reads or writes the table meanwhile (the packet loop itself,
 * at an iteration boundary, while the control thread waits). */
int dp_fdb_migrate(struct dp_fdb *fdb, const struct hitless_fwd_ops *to,
		   const struct hitless_fwd_ops *conv, uint32_t now_s,
		   struct dp_fdb_migration *res);

/* Port index <-> name ("uplink" or a VM name) for the JSON form. */
struct dp_fdb_names {
	const char *(*port_name)(uint16_t port, void *arg);
	/* 0 and the port, or -ENOENT; *mac receives the VM's configured MAC when a VM. */
	int (*port_lookup)(const char *name, uint16_t *port, void *arg);
	void *arg;
};

/* [{"mac":"..","kind":"vm"|"learned","port":"uplink"|VM,"age_s"?}]; age_s: seconds since a
 * learned address was last seen, when the stage's layout keeps it. */
json_t *dp_fdb_export(struct dp_fdb *fdb, const struct dp_fdb_names *names);
/* Validates every entry first and changes nothing on error (err names the entry).
 * Learned entries are added (with their age_s, when given and the layout keeps it); "vm"
 * entries must agree with the configured VMs, and those for VMs this generation does not
 * have are listed in *absent. Returns entries added or -1. */
int dp_fdb_import(struct dp_fdb *fdb, json_t *entries, const struct dp_fdb_names *names,
		  json_t *absent, struct ctl_error *err);

#endif
