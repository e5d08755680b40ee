/* SPDX-License-Identifier: Apache-2.0
 * Unit tests of the FDB: lookups, learning rules, the export -> import round trip that lets a
 * new generation start warm, and the all-or-nothing conversion of its words between the L2
 * stage's state layouts. Runs a real (tiny, --no-huge) EAL for rte_hash.
 * Arguments: the L2 stage built at one layout, and at the other.
 */
#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_eal.h>

#include "fdb.h"
#include "hitless_fwd.h"

/* two VMs, "a" on port 1 and "b" on port 2, plus the uplink on port 0 */
static const char *
port_name(uint16_t port, void *arg)
{
	static const char *names[] = { "uplink", "a", "b" };
	return port < 3 ? names[port] : NULL;
}

static int
port_lookup(const char *name, uint16_t *port, void *arg)
{
	bool no_b = arg != NULL; /* the importing generation may lack VM b */
	if (!strcmp(name, "uplink")) *port = 0;
	else if (!strcmp(name, "a")) *port = 1;
	else if (!strcmp(name, "b") && !no_b) *port = 2;
	else return -ENOENT;
	return 0;
}

static struct rte_ether_addr
mac(const char *s)
{
	struct rte_ether_addr m;
	assert(rte_ether_unformat_addr(s, &m) == 0);
	return m;
}

static const struct hitless_fwd_ops *
load_stage(const char *path)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	const struct hitless_fwd_ops *ops;

	assert(h != NULL);
	ops = dlsym(h, HITLESS_FWD_SYMBOL);
	assert(ops != NULL && ops->abi == HITLESS_FWD_ABI);
	return ops;
}

/* a converter that knows both layouts but refuses one entry, 02:aa:00:00:00:02 (learned) */
static const struct hitless_fwd_ops *l2_v2;

static int
picky_migrate(uint32_t from, uint32_t to, uint64_t w, uint32_t now_s, uint64_t *out)
{
	static int calls;

	if (++calls == 3)
		return -ERANGE;
	return l2_v2->migrate(from, to, w, now_s, out);
}

static uint32_t
export_age(json_t *entries, const char *mac_s)
{
	size_t i;
	json_t *e;

	json_array_foreach(entries, i, e)
		if (!strcmp(json_string_value(json_object_get(e, "mac")), mac_s))
			return json_object_get(e, "age_s") ? (uint32_t)json_integer_value(
				json_object_get(e, "age_s")) : UINT32_MAX;
	assert(!"no such entry");
	return 0;
}

int
main(int argc, char **argv)
{
	char *eal[] = { argv[0], "--no-huge", "-m", "64", "--no-pci", "--file-prefix=hl-test-fdb", "-l", "0",
			"--log-level", "error", NULL };
	struct rte_ether_addr a = mac("02:00:00:00:00:0a"), b = mac("02:00:00:00:00:0b"),
			      h1 = mac("02:aa:00:00:00:01"), h2 = mac("02:aa:00:00:00:02");
	struct dp_fdb_names names = { port_name, port_lookup, NULL };
	struct ctl_error err;
	struct hitless_fwd_entry e;

	assert(argc == 3);
	assert(rte_eal_init(10, eal) >= 0);
	const struct hitless_fwd_ops *s1 = load_stage(argv[1]), *s2 = load_stage(argv[2]);
	if (s1->layout == 2) {
		const struct hitless_fwd_ops *t = s1;
		s1 = s2;
		s2 = t;
	}
	assert(s1->layout == 1 && s2->layout == 2);
	l2_v2 = s2;
	struct dp_fdb *f = dp_fdb_create("t1", 1024), *g = dp_fdb_create("t2", 1024);
	assert(f && g);
	dp_fdb_set_codec(f, s2);
	dp_fdb_set_codec(g, s1);

	/* configured VMs are found; unknown MACs are not */
	assert(dp_fdb_set(f, &a, 1, FWD_KIND_VM) == 0);
	assert(dp_fdb_set(f, &b, 2, FWD_KIND_VM) == 0);
	assert(dp_fdb_lookup(f, &a, &e) == 0 && e.port == 1 && e.kind == FWD_KIND_VM);
	assert(dp_fdb_lookup(f, &h1, &e) == -ENOENT);

	/* learned uplink hosts, but never in place of a VM's MAC */
	assert(dp_fdb_set(f, &h1, 0, FWD_KIND_LEARNED) == 0);
	assert(dp_fdb_set(f, &h2, 0, FWD_KIND_LEARNED) == 0);
	assert(dp_fdb_lookup(f, &h1, &e) == 0 && e.port == 0 && e.kind == FWD_KIND_LEARNED &&
	       e.seen_s > 0);
	assert(dp_fdb_set(f, &a, 0, FWD_KIND_LEARNED) == -EEXIST);
	assert(dp_fdb_lookup(f, &a, &e) == 0 && e.port == 1 && e.kind == FWD_KIND_VM);
	assert(dp_fdb_count(f) == 4);

	/* export -> import into a second generation with the same VMs: learned hosts arrive
	 * (the layout-2 table exports their age; the layout-1 one does not keep it) */
	json_t *entries = dp_fdb_export(f, &names);
	assert(json_array_size(entries) == 4);
	assert(export_age(entries, "02:aa:00:00:00:01") <= 1);
	assert(export_age(entries, "02:00:00:00:00:0a") == UINT32_MAX);
	assert(dp_fdb_set(g, &a, 1, FWD_KIND_VM) == 0);
	assert(dp_fdb_set(g, &b, 2, FWD_KIND_VM) == 0);
	json_t *absent = json_array();
	assert(dp_fdb_import(g, entries, &names, absent, &err) == 2);
	assert(json_array_size(absent) == 0);
	assert(dp_fdb_lookup(g, &h2, &e) == 0 && e.port == 0 && e.kind == FWD_KIND_LEARNED);
	assert(dp_fdb_count(g) == 4);
	json_t *from_g = dp_fdb_export(g, &names);
	assert(export_age(from_g, "02:aa:00:00:00:02") == UINT32_MAX);

	/* layout 1 -> 2 by the layout-2 stage: same entries, learned ones stamped now */
	struct dp_fdb_migration mig;
	assert(dp_fdb_converter(s1, s2) == s2 && dp_fdb_converter(s2, s1) == s2);
	assert(dp_fdb_migrate(g, s2, s2, 1000, &mig) == 0 && mig.entries == 4);
	assert(dp_fdb_lookup(g, &h2, &e) == 0 && e.port == 0 && e.kind == FWD_KIND_LEARNED &&
	       e.seen_s == 1000);
	assert(dp_fdb_lookup(g, &b, &e) == 0 && e.port == 2 && e.kind == FWD_KIND_VM &&
	       e.seen_s == 0);
	/* and back 2 -> 1 by the same stage (the rollback direction) */
	assert(dp_fdb_migrate(g, s1, s2, 2000, &mig) == 0 && mig.entries == 4);
	json_t *back = dp_fdb_export(g, &names);
	assert(json_equal(back, from_g));
	json_decref(back);
	json_decref(from_g);

	/* a converter failing on one entry: nothing is rewritten, the codec stays */
	struct hitless_fwd_ops picky = *s2;
	picky.migrate = picky_migrate;
	assert(dp_fdb_migrate(g, s2, &picky, 3000, &mig) == -ERANGE && mig.entries == 0);
	assert(mig.mac[0] != '\0');
	assert(dp_fdb_lookup(g, &h2, &e) == 0 && e.port == 0 && e.kind == FWD_KIND_LEARNED);
	assert(dp_fdb_lookup(g, &a, &e) == 0 && e.port == 1 && e.kind == FWD_KIND_VM);
	back = dp_fdb_export(g, &names);
	assert(json_array_size(back) == 4 && export_age(back, "02:aa:00:00:00:01") == UINT32_MAX);
	json_decref(back);

	/* a generation without VM b: its entry is reported absent, not an error */
	struct dp_fdb *h = dp_fdb_create("t3", 1024);
	dp_fdb_set_codec(h, s2);
	struct dp_fdb_names names_no_b = { port_name, port_lookup, (void *)1 };
	assert(dp_fdb_set(h, &a, 1, FWD_KIND_VM) == 0);
	json_array_clear(absent);
	assert(dp_fdb_import(h, entries, &names_no_b, absent, &err) == 2);
	assert(json_array_size(absent) == 1 && !strcmp(json_string_value(json_array_get(absent, 0)), "b"));

	/* bad input anywhere in the list: an error naming the entry, and nothing changes */
	struct dp_fdb *k = dp_fdb_create("t4", 1024);
	dp_fdb_set_codec(k, s2);
	assert(dp_fdb_set(k, &a, 1, FWD_KIND_VM) == 0);
	json_t *bad = json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s}]",
				"mac", "02:aa:00:00:00:07", "kind", "learned", "port", "uplink",
				"mac", "not-a-mac", "kind", "learned", "port", "uplink");
	assert(dp_fdb_import(k, bad, &names, absent, &err) == -1);
	assert(strstr(err.message, "entries[1].mac") != NULL);
	assert(dp_fdb_count(k) == 1);
	json_decref(bad);
	bad = json_pack("[{s:s,s:s,s:s}]", "mac", "02:00:00:00:00:0a", "kind", "learned", "port", "uplink");
	assert(dp_fdb_import(k, bad, &names, absent, &err) == -1 && !strcmp(err.code, "conflict"));
	json_decref(bad);
	bad = json_pack("[{s:s,s:s,s:s}]", "mac", "02:00:00:00:00:0c", "kind", "vm", "port", "a");
	assert(dp_fdb_import(k, bad, &names, absent, &err) == -1 && !strcmp(err.code, "conflict"));
	json_decref(bad);
	bad = json_pack("[{s:s,s:s}]", "mac", "02:00:00:00:00:0c", "kind", "vm");
	assert(dp_fdb_import(k, bad, &names, absent, &err) == -1 && strstr(err.message, "entries[0]"));
	json_decref(bad);
	assert(dp_fdb_count(k) == 1);

	/* delete frees the entry */
	assert(dp_fdb_del(f, &h1, NULL, NULL) >= 0);
	assert(dp_fdb_lookup(f, &h1, &e) == -ENOENT);
	assert(dp_fdb_del(f, &h1, NULL, NULL) < 0);

	json_decref(entries);
	json_decref(absent);
	dp_fdb_free(f); dp_fdb_free(g); dp_fdb_free(h); dp_fdb_free(k);
	rte_eal_cleanup();
	printf("test_fdb: ok\n");
	return 0;
}
