/* SPDX-License-Identifier: Apache-2.0
 * rte_hash-backed FDB (see fdb.h). The value stored per key is not a pointer but the entry
 * itself packed into the pointer-sized data word (port | kind << 16), so readers never follow
 * memory that a writer could free.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>

#include "fdb.h"
#include "hitless_fwd.h"

struct dp_fdb {
	struct rte_hash *h;
};

static inline uintptr_t
pack(uint16_t port, uint8_t kind)
{
	return (uintptr_t)port | ((uintptr_t)kind << 16);
}

struct dp_fdb *
dp_fdb_create(const char *name, uint32_t entries)
{
	struct rte_hash_parameters p = {
		.name = name,
		.entries = entries,
		.key_len = sizeof(struct rte_ether_addr),
		.hash_func = rte_hash_crc,
		.socket_id = SOCKET_ID_ANY,
		.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF |
			      RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD,
	};
	struct dp_fdb *fdb = rte_zmalloc("fdb", sizeof(*fdb), 0);

	if (fdb == NULL)
		return NULL;
	fdb->h = rte_hash_create(&p);
	if (fdb->h == NULL) {
		rte_free(fdb);
		return NULL;
	}
	return fdb;
}

void
dp_fdb_free(struct dp_fdb *fdb)
{
	if (fdb == NULL)
		return;
	rte_hash_free(fdb->h);
	rte_free(fdb);
}

int
dp_fdb_lookup(void *f, const struct rte_ether_addr *mac, uint16_t *port, uint8_t *kind)
{
	struct dp_fdb *fdb = f;
	void *data;

	if (rte_hash_lookup_data(fdb->h, mac, &data) < 0)
		return -ENOENT;
	*port = (uint16_t)((uintptr_t)data & 0xffff);
	*kind = (uint8_t)((uintptr_t)data >> 16);
	return 0;
}

uint64_t
dp_fdb_lookup_bulk(void *f, const struct rte_ether_addr **macs, uint16_t n, uint16_t *port,
		   uint8_t *kind)
{
	struct dp_fdb *fdb = f;
	void *data[RTE_HASH_LOOKUP_BULK_MAX];
	uint64_t hit = 0;

	if (n == 0 || n > RTE_HASH_LOOKUP_BULK_MAX ||
	    rte_hash_lookup_bulk_data(fdb->h, (const void **)macs, n, &hit, data) < 0)
		return 0;
	for (uint16_t i = 0; i < n; i++) {
		if (!(hit >> i & 1))
			continue;
		port[i] = (uint16_t)((uintptr_t)data[i] & 0xffff);
		kind[i] = (uint8_t)((uintptr_t)data[i] >> 16);
	}
	return hit;
}

void
dp_fdb_learn(void *f, const struct rte_ether_addr *mac, uint16_t port)
{
	uint16_t p;
	uint8_t k;

	if (dp_fdb_lookup(f, mac, &p, &k) == 0 && (p == port || k == FWD_KIND_VM))
		return;
	rte_hash_add_key_data(((struct dp_fdb *)f)->h, mac, (void *)pack(port, FWD_KIND_LEARNED));
}

int
dp_fdb_set(struct dp_fdb *fdb, const struct rte_ether_addr *mac, uint16_t port, uint8_t kind)
{
	uint16_t p;
	uint8_t k;

	if (kind != FWD_KIND_VM && kind != FWD_KIND_LEARNED)
		return -EINVAL;
	if (kind == FWD_KIND_LEARNED && dp_fdb_lookup(fdb, mac, &p, &k) == 0 &&
	    k == FWD_KIND_VM)
		return -EEXIST;
	return rte_hash_add_key_data(fdb->h, mac, (void *)pack(port, kind));
}

int
dp_fdb_del(struct dp_fdb *fdb, const struct rte_ether_addr *mac, void (*quiesce)(void *),
	   void *arg)
{
	int32_t pos = rte_hash_del_key(fdb->h, mac);

	if (pos < 0)
		return pos;
	if (quiesce != NULL)
		quiesce(arg);
	/* lock-free mode never frees on delete: give the slot back once readers are past it */
	return rte_hash_free_key_with_position(fdb->h, pos);
}

uint32_t
dp_fdb_count(const struct dp_fdb *fdb)
{
	return (uint32_t)rte_hash_count(fdb->h);
}

void
dp_format_mac(char *buf, const struct rte_ether_addr *mac)
{
	snprintf(buf, RTE_ETHER_ADDR_FMT_SIZE, "%02x:%02x:%02x:%02x:%02x:%02x",
		 mac->addr_bytes[0], mac->addr_bytes[1], mac->addr_bytes[2], mac->addr_bytes[3],
		 mac->addr_bytes[4], mac->addr_bytes[5]);
}

json_t *
dp_fdb_export(struct dp_fdb *fdb, const struct dp_fdb_names *names)
{
	json_t *list = json_array();
	const void *key;
	void *data;
	uint32_t it = 0;

	while (rte_hash_iterate(fdb->h, &key, &data, &it) >= 0) {
		char mac[RTE_ETHER_ADDR_FMT_SIZE];
		uint16_t port = (uint16_t)((uintptr_t)data & 0xffff);
		uint8_t kind = (uint8_t)((uintptr_t)data >> 16);
		const char *pname = names->port_name(port, names->arg);

		if (pname == NULL)
			continue;
		dp_format_mac(mac, key);
		json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "mac", mac, "kind",
						      kind == FWD_KIND_VM ? "vm" : "learned",
						      "port", pname));
	}
	return list;
}

/* Parse one entry into mac/port/kind; -1 with err naming the entry when it is malformed or
 * disagrees with this generation's configuration. *absent: a VM entry for a VM not here. */
static int
parse_entry(struct dp_fdb *fdb, size_t i, json_t *e, const struct dp_fdb_names *names,
	    struct rte_ether_addr *mac, uint16_t *port, uint8_t *kind, bool *absent,
	    struct ctl_error *err)
{
	const char *smac, *skind, *sport;
	json_error_t je;
	uint16_t p;
	uint8_t k;

	*absent = false;
	if (json_unpack_ex(e, &je, JSON_STRICT, "{s:s,s:s,s:s}", "mac", &smac, "kind", &skind,
			   "port", &sport) != 0)
		return ctl_fail(err, "invalid-args", "entries[%zu]: %s", i, je.text);
	if (rte_ether_unformat_addr(smac, mac) != 0 || !rte_is_unicast_ether_addr(mac))
		return ctl_fail(err, "invalid-args",
				"entries[%zu].mac: '%.32s' is not a unicast MAC", i, smac);
	if (strcmp(skind, "vm") == 0)
		*kind = FWD_KIND_VM;
	else if (strcmp(skind, "learned") == 0)
		*kind = FWD_KIND_LEARNED;
	else
		return ctl_fail(err, "invalid-args",
				"entries[%zu].kind: must be \"vm\" or \"learned\"", i);
	if (*kind == FWD_KIND_LEARNED && strcmp(sport, "uplink") != 0)
		return ctl_fail(err, "invalid-args",
				"entries[%zu].port: learned entries are on \"uplink\"", i);
	if (names->port_lookup(sport, port, names->arg) != 0) {
		if (*kind == FWD_KIND_VM) {
			*absent = true;
			return 0;
		}
		return ctl_fail(err, "no-uplink", "entries[%zu]: this generation has no uplink", i);
	}
	if (*kind == FWD_KIND_VM &&
	    (dp_fdb_lookup(fdb, mac, &p, &k) != 0 || p != *port || k != FWD_KIND_VM))
		return ctl_fail(err, "conflict",
				"entries[%zu]: vm '%.32s' is configured here with another MAC", i,
				sport);
	if (*kind == FWD_KIND_LEARNED && dp_fdb_lookup(fdb, mac, &p, &k) == 0 &&
	    k == FWD_KIND_VM)
		return ctl_fail(err, "conflict",
				"entries[%zu]: %.32s is a VM of this generation, not an uplink host",
				i, smac);
	return 0;
}

int
dp_fdb_import(struct dp_fdb *fdb, json_t *entries, const struct dp_fdb_names *names,
	      json_t *absent, struct ctl_error *err)
{
	struct rte_ether_addr mac;
	uint16_t port;
	uint8_t kind;
	bool is_absent;
	size_t i;
	json_t *e;
	int added = 0;

	/* pass 1: validate everything, so a bad entry changes nothing */
	json_array_foreach(entries, i, e) {
		if (parse_entry(fdb, i, e, names, &mac, &port, &kind, &is_absent, err) != 0)
			return -1;
	}
	/* pass 2: apply */
	json_array_foreach(entries, i, e) {
		parse_entry(fdb, i, e, names, &mac, &port, &kind, &is_absent, err);
		if (is_absent) {
			json_array_append(absent, json_object_get(e, "port"));
			continue;
		}
		if (kind == FWD_KIND_LEARNED) {
			int rc = dp_fdb_set(fdb, &mac, port, kind);
			if (rc < 0)
				return ctl_fail(err, "table-full", "entries[%zu]: %s", i,
						rc == -ENOSPC ? "FDB is full" : "cannot add");
			added++;
		}
	}
	return added;
}
