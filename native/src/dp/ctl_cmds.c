/* SPDX-License-Identifier: Apache-2.0
 * hitless-dp's control commands, each registered once with its usage and argument table.
 * The registry has checked names and types before a handler runs; handlers check meaning.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_version.h>

#include "dp.h"

#define RD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static json_t *
vm_stats_json(const struct dp_vm *vm)
{
	const struct dp_port_stats *st = &vm->st;

	return json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I},s:I,s:I,s:I,s:I,s:i}",
			 "connected", __atomic_load_n(&vm->ready, __ATOMIC_ACQUIRE),
			 "rx_pkts", (json_int_t)RD(st->rx_pkts),
			 "rx_bytes", (json_int_t)RD(st->rx_bytes),
			 "tx_pkts", (json_int_t)RD(st->tx_pkts),
			 "tx_bytes", (json_int_t)RD(st->tx_bytes),
			 "tx_retries", (json_int_t)RD(st->tx_retries),
			 "drops",
			 "ring_full", (json_int_t)RD(st->drop_ring_full),
			 "no_dest", (json_int_t)RD(st->drop_no_dest),
			 "not_ready", (json_int_t)RD(st->drop_not_ready),
			 "stalled", (json_int_t)RD(st->drop_stalled),
			 "last_rx_ns", (json_int_t)RD(st->last_rx_ns),
			 "last_tx_ns", (json_int_t)RD(st->last_tx_ns),
			 "first_rx_ns", (json_int_t)RD(st->first_rx_ns),
			 "first_tx_ns", (json_int_t)RD(st->first_tx_ns),
			 "pending", (int)RD(vm->pend_n));
}

json_t *
dp_stats_json(const struct dp_vm *only)
{
	json_t *vms = json_object();

	for (int s = 0; s < DP_MAX_VMS; s++) {
		const struct dp_vm *vm = &dp.vms[s];
		if (__atomic_load_n(&vm->in_use, __ATOMIC_ACQUIRE) && (only == NULL || only == vm))
			json_object_set_new(vms, vm->name, vm_stats_json(vm));
	}
	return json_pack("{s:I,s:o,s:o*,s:o*,s:{s:I,s:I,s:I,s:I,s:I,s:I}}",
			 "t_ns", (json_int_t)hl_now_ns(), "vms", vms,
			 "uplink", dp_ext_json(&dp.up), "peer", dp_ext_json(&dp.peer),
			 "loop",
			 "busy_cycles", (json_int_t)RD(dp.ls.busy_cycles),
			 "busy_pkts", (json_int_t)RD(dp.ls.busy_pkts),
			 "iterations", (json_int_t)RD(dp.ls.iterations),
			 "busy_iterations", (json_int_t)RD(dp.ls.busy_iterations),
			 "idle_sleeps", (json_int_t)RD(dp.ls.idle_sleeps),
			 "flood_pkts", (json_int_t)RD(dp.ls.flood_pkts));
}

json_t *
dp_gen_info_json(void)
{
	int nvms = 0;

	for (int s = 0; s < DP_MAX_VMS; s++)
		nvms += __atomic_load_n(&dp.vms[s].in_use, __ATOMIC_ACQUIRE);
	return json_pack("{s:s,s:s,s:s,s:i,s:s,s:I,s:o,s:s?,s:s?,s:i,s:i,s:I,s:I}",
			 "gen_id", dp.gen_id, "version", HITLESS_RELEASE, "dpdk", rte_version(),
			 "pid", (int)getpid(), "run_dir", dp.run_dir,
			 "uptime_ms", (json_int_t)((hl_now_ns() - dp.started_ns) / 1000000),
			 "fwd", dp_running_stage_json(),
			 "uplink", dp.up.port >= 0 ? dp.up.spec : NULL,
			 "peer", dp.peer.port >= 0 ? dp.peer.spec : NULL,
			 "vms", nvms, "max_vms", DP_MAX_VMS,
			 "fdb_entries", (json_int_t)dp_fdb_count(dp.fdb),
			 "tsc_hz", (json_int_t)rte_get_tsc_hz());
}

static int
cmd_gen_info(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	*result = dp_gen_info_json();
	return 0;
}

static struct dp_vm *
vm_arg(json_t *args, struct ctl_error *err)
{
	const char *name = json_string_value(json_object_get(args, "vm"));
	struct dp_vm *vm = dp_vm_find(name);

	if (vm == NULL)
		ctl_fail(err, "unknown-vm", "no vm '%.40s' in this generation", name);
	return vm;
}

static const struct ctl_arg vm_add_args[] = {
	{ "vm", CTL_T_STRING, true },
	{ "mac", CTL_T_STRING, true },
	{ "socket", CTL_T_STRING, false },
	{ "client", CTL_T_BOOL, false },
	{ NULL },
};

static int
cmd_vm_add(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	const char *name = json_string_value(json_object_get(args, "vm"));
	const char *smac = json_string_value(json_object_get(args, "mac"));
	json_t *sock = json_object_get(args, "socket");
	bool client = json_is_true(json_object_get(args, "client"));
	struct rte_ether_addr mac;
	struct dp_vm *vm;

	if (rte_ether_unformat_addr(smac, &mac) != 0)
		return ctl_fail(err, "invalid-args", "mac: '%.32s' is not a MAC address", smac);
	if (dp_vm_add(name, &mac, sock ? json_string_value(sock) : NULL, client, err) != 0)
		return -1;
	vm = dp_vm_find(name);
	*result = json_pack("{s:s,s:s,s:s,s:i}", "vm", vm->name, "socket", vm->sock, "mode",
			    client ? "client" : "server", "port", dp_vm_port(vm));
	return 0;
}

static const struct ctl_arg vm_only_args[] = {
	{ "vm", CTL_T_STRING, true },
	{ NULL },
};

static int
cmd_vm_del(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	return dp_vm_del(json_string_value(json_object_get(args, "vm")), err);
}

static int
cmd_vm_list(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	json_t *list = json_array();

	for (int s = 0; s < DP_MAX_VMS; s++) {
		const struct dp_vm *vm = &dp.vms[s];
		char mac[RTE_ETHER_ADDR_FMT_SIZE];

		if (!__atomic_load_n(&vm->in_use, __ATOMIC_ACQUIRE))
			continue;
		dp_format_mac(mac, &vm->mac);
		json_array_append_new(list, json_pack(
			"{s:s,s:s,s:s,s:s,s:b,s:i,s:I,s:I}", "vm", vm->name, "mac", mac,
			"socket", vm->sock, "mode", vm->client ? "client" : "server",
			"connected", __atomic_load_n(&vm->ready, __ATOMIC_ACQUIRE),
			"port", dp_vm_port(vm), "connects", (json_int_t)vm->connects,
			"connected_ns", (json_int_t)vm->connected_ns));
	}
	*result = json_pack("{s:o}", "vms", list);
	return 0;
}

static const struct ctl_arg stats_args[] = {
	{ "vm", CTL_T_STRING, false },
	{ NULL },
};

static int
cmd_stats_show(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	const struct dp_vm *vm = NULL;

	if (json_object_get(args, "vm") != NULL && (vm = vm_arg(args, err)) == NULL)
		return -1;
	*result = dp_stats_json(vm);
	return 0;
}

static const struct dp_fdb_names fdb_names = {
	.port_name = dp_port_name,
	.port_lookup = dp_port_lookup,
};

static int
cmd_fdb_export(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	*result = json_pack("{s:s,s:o}", "gen_id", dp.gen_id, "entries",
			    dp_fdb_export(dp.fdb, &fdb_names));
	return 0;
}

static const struct ctl_arg fdb_import_args[] = {
	{ "entries", CTL_T_ARRAY, true },
	{ NULL },
};

static int
cmd_fdb_import(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	json_t *absent = json_array();
	int n = dp_fdb_import(dp.fdb, json_object_get(args, "entries"), &fdb_names, absent, err);

	if (n < 0) {
		json_decref(absent);
		return -1;
	}
	*result = json_pack("{s:i,s:o,s:I}", "imported", n, "absent_vms", absent, "fdb_entries",
			    (json_int_t)dp_fdb_count(dp.fdb));
	return 0;
}

static int
cmd_vm_announce(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	struct dp_vm *vm = vm_arg(args, err);
	int rc;

	if (vm == NULL)
		return -1;
	rc = dp_announce(vm);
	if (rc == -ENODEV)
		return ctl_fail(err, "no-uplink", "this generation has no uplink");
	if (rc != 0)
		return ctl_fail(err, "busy", "announcement not queued (%s)", strerror(-rc));
	*result = json_pack("{s:s,s:s}", "vm", vm->name, "sent", "rarp");
	return 0;
}

static const struct ctl_arg stall_args[] = {
	{ "vm", CTL_T_STRING, true },
	{ "ms", CTL_T_INT, true, 0, 60000 },
	{ NULL },
};

static int
cmd_debug_stall(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	struct dp_vm *vm = vm_arg(args, err);
	json_int_t ms = json_integer_value(json_object_get(args, "ms"));
	uint64_t start = hl_now_ns(), until = start + (uint64_t)ms * 1000000ull;

	if (vm == NULL)
		return -1;
	__atomic_store_n(&vm->stall_until_ns, until, __ATOMIC_RELEASE);
	*result = json_pack("{s:s,s:I,s:I}", "vm", vm->name, "start_ns", (json_int_t)start,
			    "until_ns", (json_int_t)until);
	return 0;
}

static const struct ctl_arg peer_args[] = {
	{ "socket", CTL_T_STRING, true },
	{ "server", CTL_T_BOOL, true },
	{ NULL },
};

static int
cmd_peer_attach(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	const char *sock = json_string_value(json_object_get(args, "socket"));
	bool server = json_is_true(json_object_get(args, "server"));
	int rc;

	if (strlen(sock) == 0 || strlen(sock) >= sizeof(dp.peer_sock))
		return ctl_fail(err, "invalid-args", "socket: 1..%zu bytes", sizeof(dp.peer_sock) - 1);
	rc = dp_peer_init(sock, server);
	if (rc == -EEXIST)
		return ctl_fail(err, "exists", "a peer link is already attached (%s)", dp.peer.spec);
	if (rc != 0)
		return ctl_fail(err, "peer", "cannot attach the peer link on %s: %s", sock,
				strerror(rc < 0 ? -rc : rc));
	*result = dp_ext_json(&dp.peer);
	return 0;
}

static int
cmd_peer_detach(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	if (dp_peer_detach() != 0)
		return ctl_fail(err, "no-peer", "no peer link is attached");
	return 0;
}

static int
cmd_lib_info(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	*result = json_pack("{s:o,s:o,s:o,s:i,s:i}", "stage", dp_stage_json(&dp.stage), "previous",
			    dp_stage_json(&dp.prev_stage), "staged", dp_stage_json(&dp.staged),
			    "swaps", (int)dp.swaps, "abi", HITLESS_FWD_ABI);
	return 0;
}

static const struct ctl_arg lib_swap_args[] = {
	{ "path", CTL_T_STRING, true },
	{ NULL },
};

static int
cmd_lib_swap(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	return dp_fwd_swap(json_string_value(json_object_get(args, "path")), result, err);
}

static int
cmd_lib_load(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	return dp_fwd_preload(json_string_value(json_object_get(args, "path")), result, err);
}

static int
cmd_lib_unload(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	return dp_fwd_unload(result, err);
}

static int
cmd_lib_check(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	return dp_fwd_check(json_string_value(json_object_get(args, "path")), result, err);
}

static int
cmd_lib_rollback(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	return dp_fwd_swap(NULL, result, err);
}

void
dp_ctl_register(struct ctl_registry *reg)
{
	ctl_register(reg, "gen/info", "gen/info: generation id, release, forwarding stage, uplink",
		     NULL, cmd_gen_info, NULL);
	ctl_register(reg, "vm/add",
		     "vm/add {vm, mac, socket?, client?}: serve a VM on <run-dir>/vhost/<vm>.sock, "
		     "or connect to socket (client: true) and keep reconnecting",
		     vm_add_args, cmd_vm_add, NULL);
	ctl_register(reg, "vm/del", "vm/del {vm}: disconnect (after draining) and forget a VM",
		     vm_only_args, cmd_vm_del, NULL);
	ctl_register(reg, "vm/list", "vm/list: configured VMs and whether a frontend is connected",
		     NULL, cmd_vm_list, NULL);
	ctl_register(reg, "vm/announce",
		     "vm/announce {vm}: send a gratuitous RARP with the VM's MAC on the uplink",
		     vm_only_args, cmd_vm_announce, NULL);
	ctl_register(reg, "stats/show",
		     "stats/show {vm?}: per-VM counters (rx = from the guest, tx = to the guest), "
		     "drops by reason, last rx/tx (CLOCK_MONOTONIC ns), uplink and loop counters",
		     stats_args, cmd_stats_show, NULL);
	ctl_register(reg, "fdb/export", "fdb/export: the forwarding table as JSON entries", NULL,
		     cmd_fdb_export, NULL);
	ctl_register(reg, "fdb/import",
		     "fdb/import {entries}: add learned entries from fdb/export of another "
		     "generation; all or nothing", fdb_import_args, cmd_fdb_import, NULL);
	ctl_register(reg, "peer/attach",
		     "peer/attach {socket, server}: memif link to the host's other generation "
		     "(the older one is the server)", peer_args, cmd_peer_attach, NULL);
	ctl_register(reg, "peer/detach", "peer/detach: drop the peer link", NULL, cmd_peer_detach,
		     NULL);
	ctl_register(reg, "lib/info",
		     "lib/info: the running forwarding stage and the one lib/rollback returns to",
		     NULL, cmd_lib_info, NULL);
	ctl_register(reg, "lib/swap",
		     "lib/swap {path}: replace the forwarding stage in place, converting the FDB "
		     "when its state layout differs; the old stage goes on when refused",
		     lib_swap_args, cmd_lib_swap, NULL);
	ctl_register(reg, "lib/load",
		     "lib/load {path}: open and check a stage now and keep it, so that lib/swap of "
		     "the same path only switches", lib_swap_args, cmd_lib_load, NULL);
	ctl_register(reg, "lib/unload",
		     "lib/unload: close the stage lib/load kept (a prepared swap not made)", NULL,
		     cmd_lib_unload, NULL);
	ctl_register(reg, "lib/check",
		     "lib/check {path}: would lib/swap take this stage (loads, ABI, a conversion "
		     "of the FDB's layout)? Changes nothing", lib_swap_args, cmd_lib_check, NULL);
	ctl_register(reg, "lib/rollback",
		     "lib/rollback: swap back to the previous forwarding stage", NULL,
		     cmd_lib_rollback, NULL);
	ctl_register(reg, "debug/stall",
		     "debug/stall {vm, ms}: stop serving one VM for ms (fault injection)",
		     stall_args, cmd_debug_stall, NULL);
}
