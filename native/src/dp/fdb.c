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
#include "util.h"

struct dp_fdb {
	struct rte_hash *h;
	const struct hitless_fwd_ops *codec; /* atomic: the stage whose layout the words are in */
	uint32_t cap;                        /* migration scratch: room for every entry */
	const void **keys;
	uint64_t *words;
};

static inline uintptr_t
word_of(void *data)
{
	return (uintptr_t)data;
}

static inline const struct hitless_fwd_ops *
codec(const struct dp_fdb *fdb)
{
	return __atomic_load_n(&fdb->codec, __ATOMIC_ACQUIRE);
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
	/* rte_hash may hold a few more than asked (per-lcore slot caches): leave room */
	fdb->cap = entries * 2;
	fdb->h = rte_hash_create(&p);
	fdb->keys = rte_zmalloc("fdb_keys", fdb->cap * sizeof(fdb->keys[0]), 0);
	fdb->words = rte_zmalloc("fdb_words", fdb->cap * sizeof(fdb->words[0]), 0);
	if (fdb->h == NULL || fdb->keys == NULL || fdb->words == NULL) {
		dp_fdb_free(fdb);
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
	rte_free(fdb->keys);
	rte_free(fdb->words);
	rte_free(fdb);
}

void
dp_fdb_set_codec(struct dp_fdb *fdb, const struct hitless_fwd_ops *c)
{
	__atomic_store_n(&fdb->codec, c, __ATOMIC_RELEASE);
}

int
dp_fdb_lookup(struct dp_fdb *fdb, const struct rte_ether_addr *mac, struct hitless_fwd_entry *e)
{
	void *data;

	if (rte_hash_lookup_data(fdb->h, mac, &data) < 0)
		return -ENOENT;
	codec(fdb)->decode(word_of(data), e);
	return 0;
}

uint64_t
dp_fdb_lookup_words(void *f, const struct rte_ether_addr **macs, uint16_t n, uint64_t *word)
{
	struct dp_fdb *fdb = f;
	void *data[RTE_HASH_LOOKUP_BULK_MAX];
	uint64_t hit = 0;

	if (n == 0 || n > RTE_HASH_LOOKUP_BULK_MAX ||
	    rte_hash_lookup_bulk_data(fdb->h, (const void **)macs, n, &hit, data) < 0)
		return 0;
	for (uint16_t i = 0; i < n; i++)
		if (hit >> i & 1)
			word[i] = word_of(data[i]);
	return hit;
}

int
dp_fdb_store(void *f, const struct rte_ether_addr *mac, uint64_t word)
{
	return rte_hash_add_key_data(((struct dp_fdb *)f)->h, mac, (void *)(uintptr_t)word);
}

/* Add or replace an entry, learned ones last seen age_s ago. */
static int
set_aged(struct dp_fdb *fdb, const struct rte_ether_addr *mac, uint16_t port, uint8_t kind,
	 uint32_t age_s)
{
	uint32_t now_s = (uint32_t)(hl_now_ns() / 1000000000ull);
	struct hitless_fwd_entry e = { .port = port, .kind = kind };
	struct hitless_fwd_entry old;

	if (kind != FWD_KIND_VM && kind != FWD_KIND_LEARNED)
		return -EINVAL;
	if (kind == FWD_KIND_LEARNED) {
		if (dp_fdb_lookup(fdb, mac, &old) == 0 && old.kind == FWD_KIND_VM)
			return -EEXIST;
		/* 0 means "not kept": a stamp is at least 1 */
		e.seen_s = now_s > age_s ? now_s - age_s : 1;
	}
	return dp_fdb_store(fdb, mac, codec(fdb)->encode(&e));
}

int
dp_fdb_set(struct dp_fdb *fdb, const struct rte_ether_addr *mac, uint16_t port, uint8_t kind)
{
	return set_aged(fdb, mac, port, kind, 0);
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

const struct hitless_fwd_ops *
dp_fdb_converter(const struct hitless_fwd_ops *from, const struct hitless_fwd_ops *to)
{
	struct hitless_fwd_entry probe = { .port = 1, .kind = FWD_KIND_VM };
	uint64_t w = from->encode(&probe), out;

	if (from->layout == to->layout)
		return to;
	if (to->migrate != NULL && to->migrate(from->layout, to->layout, w, 1, &out) != -ENOTSUP)
		return to;
	if (from->migrate != NULL &&
	    from->migrate(from->layout, to->layout, w, 1, &out) != -ENOTSUP)
		return from;
	return NULL;
}

int
dp_fdb_migrate(struct dp_fdb *fdb, const struct hitless_fwd_ops *to,
	       const struct hitless_fwd_ops *conv, uint32_t now_s, struct dp_fdb_migration *res)
{
	const struct hitless_fwd_ops *from = codec(fdb);
	const void *key;
	void *data;
	uint32_t it = 0, n = 0;

	memset(res, 0, sizeof(*res));
	if (from->layout != to->layout) {
		/* pass 1: convert into scratch, writing nothing */
		while (rte_hash_iterate(fdb->h, &key, &data, &it) >= 0) {
			int rc;

			if (n == fdb->cap)
				return res->rc = -ENOSPC;
			rc = conv->migrate(from->layout, to->layout, word_of(data), now_s,
					   &fdb->words[n]);
			if (rc != 0) {
				dp_format_mac(res->mac, key);
				return res->rc = rc;
			}
			fdb->keys[n++] = key;
		}
		/* pass 2: every word converts; write them (same keys: replaces data only) */
		for (uint32_t i = 0; i < n; i++)
			dp_fdb_store(fdb, fdb->keys[i], fdb->words[i]);
	}
	res->entries = n;
	dp_fdb_set_codec(fdb, to);
	return 0;
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

	const struct hitless_fwd_ops *c = codec(fdb);
	uint32_t now_s = (uint32_t)(hl_now_ns() / 1000000000ull);

	while (rte_hash_iterate(fdb->h, &key, &data, &it) >= 0) {
		char mac[RTE_ETHER_ADDR_FMT_SIZE];
		struct hitless_fwd_entry e;
		const char *pname;
		json_t *o;

		c->decode(word_of(data), &e);
		pname = names->port_name(e.port, names->arg);
		if (pname == NULL)
			continue;
		dp_format_mac(mac, key);
		o = json_pack("{s:s,s:s,s:s}", "mac", mac, "kind",
			      e.kind == FWD_KIND_VM ? "vm" : "learned", "port", pname);
		if (e.kind == FWD_KIND_LEARNED && e.seen_s != 0)
			json_object_set_new(o, "age_s",
					    json_integer(now_s > e.seen_s ? now_s - e.seen_s : 0));
		json_array_append_new(list, o);
	}
	return list;
}

/* Parse one entry into mac/port/kind/age; -1 with err naming the entry when it is malformed
 * or disagrees with this generation's configuration. *absent: a VM entry for a VM not here. */
static int
parse_entry(struct dp_fdb *fdb, size_t i, json_t *e, const struct dp_fdb_names *names,
	    struct rte_ether_addr *mac, uint16_t *port, uint8_t *kind, uint32_t *age_s,
	    bool *absent, struct ctl_error *err)
{
	const char *smac, *skind, *sport;
	json_int_t age = 0;
	json_error_t je;
	struct hitless_fwd_entry old;

	*absent = false;
	if (json_unpack_ex(e, &je, JSON_STRICT, "{s:s,s:s,s:s,s?I}", "mac", &smac, "kind", &skind,
			   "port", &sport, "age_s", &age) != 0)
		return ctl_fail(err, "invalid-args", "entries[%zu]: %s", i, je.text);
	if (age < 0 || age > UINT32_MAX / 2)
		return ctl_fail(err, "invalid-args", "entries[%zu].age_s: out of range", i);
	*age_s = (uint32_t)age;
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
	    (dp_fdb_lookup(fdb, mac, &old) != 0 || old.port != *port || old.kind != FWD_KIND_VM))
		return ctl_fail(err, "conflict",
				"entries[%zu]: vm '%.32s' is configured here with another MAC", i,
				sport);
	if (*kind == FWD_KIND_LEARNED && dp_fdb_lookup(fdb, mac, &old) == 0 &&
	    old.kind == FWD_KIND_VM)
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
	uint32_t age_s;
	bool is_absent;
	size_t i;
	json_t *e;
	int added = 0;

	/* pass 1: validate everything, so a bad entry changes nothing */
	json_array_foreach(entries, i, e) {
		if (parse_entry(fdb, i, e, names, &mac, &port, &kind, &age_s, &is_absent, err) != 0)
			return -1;
	}
	/* pass 2: apply */
	json_array_foreach(entries, i, e) {
		parse_entry(fdb, i, e, names, &mac, &port, &kind, &age_s, &is_absent, err);
		if (is_absent) {
			json_array_append(absent, json_object_get(e, "port"));
			continue;
		}
		if (kind == FWD_KIND_LEARNED) {
			int rc = set_aged(fdb, &mac, port, kind, age_s);
			if (rc < 0)
				return ctl_fail(err, "table-full", "entries[%zu]: %s", i,
						rc == -ENOSPC ? "FDB is full" : "cannot add");
			added++;
		}
	}
	return added;
}
