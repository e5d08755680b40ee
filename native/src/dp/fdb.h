/* SPDX-License-Identifier: Apache-2.0
 * The generation's forwarding table: MAC -> port index, with the entry's kind (configured VM
 * or learned on the uplink). Backed by rte_hash in lock-free read mode so the packet loop looks
 * up without locks while the control thread adds and deletes.
 */
#ifndef HITLESS_DP_FDB_H
#define HITLESS_DP_FDB_H

#include <stdint.h>
#include <jansson.h>
#include <rte_ether.h>

#include "ctl.h"

struct dp_fdb;

struct dp_fdb *dp_fdb_create(const char *name, uint32_t entries);
void dp_fdb_free(struct dp_fdb *fdb);

/* 0 and the entry, or -ENOENT. Safe from the packet loop. */
int dp_fdb_lookup(void *fdb, const struct rte_ether_addr *mac, uint16_t *port, uint8_t *kind);
/* Bulk lookup of n <= RTE_HASH_LOOKUP_BULK_MAX addresses; returns the hit mask. */
uint64_t dp_fdb_lookup_bulk(void *fdb, const struct rte_ether_addr **macs, uint16_t n,
			    uint16_t *port, uint8_t *kind);
/* Learn mac on port unless it is already there or is a configured VM. Safe from the loop. */
void dp_fdb_learn(void *fdb, const struct rte_ether_addr *mac, uint16_t port);
/* Configure an entry; a learned entry never replaces a VM entry (-EEXIST). */
int dp_fdb_set(struct dp_fdb *fdb, const struct rte_ether_addr *mac, uint16_t port,
	       uint8_t kind);
/* Delete; quiesce(arg) is called before the slot is reused so no reader still sees it. */
int dp_fdb_del(struct dp_fdb *fdb, const struct rte_ether_addr *mac,
	       void (*quiesce)(void *), void *arg);
uint32_t dp_fdb_count(const struct dp_fdb *fdb);
/* aa:bb:cc:dd:ee:ff, lower case as Linux prints them, into buf[RTE_ETHER_ADDR_FMT_SIZE]. */
void dp_format_mac(char *buf, const struct rte_ether_addr *mac);

/* Port index <-> name ("uplink" or a VM name) for the JSON form. */
struct dp_fdb_names {
	const char *(*port_name)(uint16_t port, void *arg);
	/* 0 and the port, or -ENOENT; *mac receives the VM's configured MAC when a VM. */
	int (*port_lookup)(const char *name, uint16_t *port, void *arg);
	void *arg;
};

/* [{"mac":"..","kind":"vm"|"learned","port":"uplink"|VM}] */
json_t *dp_fdb_export(struct dp_fdb *fdb, const struct dp_fdb_names *names);
/* Validates every entry first and changes nothing on error (err names the entry).
 * Learned entries are added; "vm" entries must agree with the configured VMs, and those for
 * VMs this generation does not have are listed in *absent. Returns entries added or -1. */
int dp_fdb_import(struct dp_fdb *fdb, json_t *entries, const struct dp_fdb_names *names,
		  json_t *absent, struct ctl_error *err);

#endif
