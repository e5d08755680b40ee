/* SPDX-License-Identifier: Apache-2.0
 * What a generation says about itself: gen/info (identity, release, forwarding stage, ports)
 * and stats/show (per-VM counters, the external ports' and the loop's). telemetry.c serves
 * the same JSON through DPDK telemetry, so the two views cannot disagree.
 *
 * Counters are written by the packet loop only and read here with relaxed atomic loads.
 */
#include <string.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_version.h>

#include "dp.h"

#define RD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* One VM's counters (rx = from the guest, tx = to the guest) and what waits for its RX ring. */
static json_t *
vm_stats_json(const struct dp_vm *vm)
{
	const struct dp_port_stats *st = &vm->st;

	bool pf_done = __atomic_load_n(&vm->prefault.done, __ATOMIC_ACQUIRE);
	int pf_err = RD(vm->prefault.err);
	/* its guest memory mapped ahead (prefault.c): null before any memory table */
	json_t *prefault = RD(vm->prefault.seq) == 0 ? json_null()
		: json_pack("{s:b,s:I,s:f,s:o}", "done", pf_done, "pages", (json_int_t)RD(vm->prefault.pages),
			    "ms", (double)RD(vm->prefault.took_ns) / 1e6,
			    "error", pf_done && pf_err ? json_string(strerror(pf_err)) : json_null());

	return json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I},s:I,s:I,s:I,s:I,s:i,s:I,s:I,s:o}",
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
			 "pending", (int)RD(vm->pend_n),
			 "fences", (json_int_t)RD(st->fences),
			 "fence_timeouts", (json_int_t)RD(st->fence_timeouts), "prefault", prefault);
}

/* stats/show's result: every VM's counters (or only one VM's), the external ports', the
 * loop's. */
json_t *
dp_stats_json(const struct dp_vm *only)
{
	json_t *vms = json_object();

	for (int s = 0; s < DP_MAX_VMS; s++) {
		const struct dp_vm *vm = &dp.vms[s];
		if (__atomic_load_n(&vm->in_use, __ATOMIC_ACQUIRE) && (only == NULL || only == vm))
			json_object_set_new(vms, vm->name, vm_stats_json(vm));
	}
	json_t *kept = json_array();
	uint64_t n = __atomic_load_n(&dp.ls.n_kept, __ATOMIC_ACQUIRE);

	for (uint64_t i = n > DP_STALLS_KEPT ? n - DP_STALLS_KEPT : 0; i < n; i++) {
		const struct dp_stall *k = &dp.ls.kept[i % DP_STALLS_KEPT];

		json_array_append_new(kept, json_pack("{s:I,s:I,s:I}", "start_ns",
						      (json_int_t)RD(k->start_ns), "dur_us",
						      (json_int_t)(RD(k->dur_ns) / 1000), "ran_us",
						      (json_int_t)(RD(k->ran_ns) / 1000)));
	}
	return json_pack("{s:I,s:o,s:o*,s:o*,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I,s:o}}}",
			 "t_ns", (json_int_t)hl_now_ns(), "vms", vms,
			 "uplink", dp_ext_json(&dp.up), "peer", dp_ext_json(&dp.peer),
			 "loop",
			 "busy_cycles", (json_int_t)RD(dp.ls.busy_cycles),
			 "busy_pkts", (json_int_t)RD(dp.ls.busy_pkts),
			 "iterations", (json_int_t)RD(dp.ls.iterations),
			 "busy_iterations", (json_int_t)RD(dp.ls.busy_iterations),
			 "idle_sleeps", (json_int_t)RD(dp.ls.idle_sleeps),
			 "flood_pkts", (json_int_t)RD(dp.ls.flood_pkts),
			 "stalls",
			 "count", (json_int_t)RD(dp.ls.stalls),
			 "total_us", (json_int_t)(RD(dp.ls.stall_ns) / 1000),
			 "max_us", (json_int_t)(RD(dp.ls.stall_max_ns) / 1000),
			 "max_at_ns", (json_int_t)RD(dp.ls.stall_max_at_ns),
			 "threshold_us", (json_int_t)(DP_STALL_NS / 1000),
			 "long", kept);
}

/* gen/info's result: who this generation is and what it runs. */
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

static const struct ctl_arg stats_args[] = {
	{ "vm", CTL_T_STRING, false },
	{ NULL },
};

static int
cmd_stats_show(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	const struct dp_vm *vm = NULL;

	if (json_object_get(args, "vm") != NULL && (vm = dp_vm_arg(args, err)) == NULL)
		return -1;
	*result = dp_stats_json(vm);
	return 0;
}

static const struct ctl_command stats_cmds[] = {
	{ "gen/info", "gen/info: generation id, release, forwarding stage, uplink", NULL,
	  cmd_gen_info },
	{ "stats/show", "stats/show {vm?}: per-VM counters (rx = from the guest, tx = to the guest), "
	  "drops by reason, last rx/tx (CLOCK_MONOTONIC ns), uplink and loop counters", stats_args,
	  cmd_stats_show },
};

int
dp_stats_ctl_register(struct ctl_registry *reg)
{
	return ctl_register_table(reg, stats_cmds, RTE_DIM(stats_cmds), NULL);
}
