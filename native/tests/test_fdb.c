/* SPDX-License-Identifier: Apache-2.0
 * Unit tests of the FDB: lookups, learning rules, and the export -> import round trip that
 * lets a new generation start warm. Runs a real (tiny, --no-huge) EAL for rte_hash.
 */
#include <assert.h>
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

int
main(int argc, char **argv)
{
	char *eal[] = { argv[0], "--no-huge", "-m", "64", "--no-pci", "--file-prefix=hl-test-fdb", "-l", "0",
			"--log-level", "error", NULL };
	struct rte_ether_addr a = mac("02:00:00:00:00:0a"), b = mac("02:00:00:00:00:0b"),
			      h1 = mac("02:aa:00:00:00:01"), h2 = mac("02:aa:00:00:00:02");
	struct dp_fdb_names names = { port_name, port_lookup, NULL };
	struct ctl_error err;
	uint16_t port;
	uint8_t kind;

	assert(rte_eal_init(10, eal) >= 0);
	struct dp_fdb *f = dp_fdb_create("t1", 1024), *g = dp_fdb_create("t2", 1024);
	assert(f && g);

	/* configured VMs are found; unknown MACs are not */
	assert(dp_fdb_set(f, &a, 1, FWD_KIND_VM) == 0);
	assert(dp_fdb_set(f, &b, 2, FWD_KIND_VM) == 0);
	assert(dp_fdb_lookup(f, &a, &port, &kind) == 0 && port == 1 && kind == FWD_KIND_VM);
	assert(dp_fdb_lookup(f, &h1, &port, &kind) == -ENOENT);

	/* learning adds uplink hosts but never steals a VM's MAC */
	dp_fdb_learn(f, &h1, 0);
	dp_fdb_learn(f, &h2, 0);
	dp_fdb_learn(f, &a, 0);
	assert(dp_fdb_lookup(f, &h1, &port, &kind) == 0 && port == 0 && kind == FWD_KIND_LEARNED);
	assert(dp_fdb_lookup(f, &a, &port, &kind) == 0 && port == 1 && kind == FWD_KIND_VM);
	assert(dp_fdb_set(f, &a, 0, FWD_KIND_LEARNED) == -EEXIST);
	assert(dp_fdb_count(f) == 4);

	/* export -> import into a second generation with the same VMs: learned hosts arrive */
	json_t *entries = dp_fdb_export(f, &names);
	assert(json_array_size(entries) == 4);
	assert(dp_fdb_set(g, &a, 1, FWD_KIND_VM) == 0);
	assert(dp_fdb_set(g, &b, 2, FWD_KIND_VM) == 0);
	json_t *absent = json_array();
	assert(dp_fdb_import(g, entries, &names, absent, &err) == 2);
	assert(json_array_size(absent) == 0);
	assert(dp_fdb_lookup(g, &h2, &port, &kind) == 0 && port == 0 && kind == FWD_KIND_LEARNED);
	assert(dp_fdb_count(g) == 4);

	/* a generation without VM b: its entry is reported absent, not an error */
	struct dp_fdb *h = dp_fdb_create("t3", 1024);
	struct dp_fdb_names names_no_b = { port_name, port_lookup, (void *)1 };
	assert(dp_fdb_set(h, &a, 1, FWD_KIND_VM) == 0);
	json_array_clear(absent);
	assert(dp_fdb_import(h, entries, &names_no_b, absent, &err) == 2);
	assert(json_array_size(absent) == 1 && !strcmp(json_string_value(json_array_get(absent, 0)), "b"));

	/* bad input anywhere in the list: an error naming the entry, and nothing changes */
	struct dp_fdb *k = dp_fdb_create("t4", 1024);
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
	assert(dp_fdb_lookup(f, &h1, &port, &kind) == -ENOENT);
	assert(dp_fdb_del(f, &h1, NULL, NULL) < 0);

	json_decref(entries);
	json_decref(absent);
	dp_fdb_free(f); dp_fdb_free(g); dp_fdb_free(h); dp_fdb_free(k);
	rte_eal_cleanup();
	printf("test_fdb: ok\n");
	return 0;
}
