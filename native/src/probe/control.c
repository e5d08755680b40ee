/* SPDX-License-Identifier: Apache-2.0
 * Control-socket commands of hitless-probe. Handlers run on the ctl server thread; they only
 * read counters (relaxed atomics) and write a flow's rate/pause flags or the stop request,
 * which the packet loop picks up on its next tick.
 */
#include <errno.h>
#include <string.h>

#include "ctl.h"
#include "probe.h"

static const struct ctl_arg no_args[] = { { NULL } };
static const struct ctl_arg flow_arg[] = {
	{ "flow", CTL_T_STRING, true, 0, 0 },
	{ NULL },
};
static const struct ctl_arg flow_set_args[] = {
	{ "flow", CTL_T_STRING, true, 0, 0 },
	{ "pps", CTL_T_INT, true, 1, (long long)PROBE_MAX_PPS },
	{ NULL },
};

/* Flows matching a "SRC:DST" name (as given on the command line), or "#ID". Fills ids and
 * returns how many matched. */
static unsigned
match_flows(struct probe_ctx *ctx, const char *name, unsigned *ids)
{
	unsigned n = 0;

	for (unsigned i = 0; i < ctx->n_flows; i++) {
		char idname[16];

		snprintf(idname, sizeof(idname), "#%u", i);
		if (strcmp(ctx->flows[i].name, name) == 0 || strcmp(idname, name) == 0)
			ids[n++] = i;
	}
	return n;
}

static int
stats_show(struct ctl_call *call, json_t *args, json_t **result, struct ctl_error *err)
{
	*result = probe_report(call->aux, hl_now_ns(), false);
	return *result ? 0 : ctl_fail(err, "internal", "cannot build the report");
}

/* flow/set, flow/pause and flow/resume share this: find the flows, apply, list them. */
static int
flow_change(struct ctl_call *call, json_t *args, json_t **result, struct ctl_error *err)
{
	struct probe_ctx *ctx = call->aux;
	const char *name = json_string_value(json_object_get(args, "flow"));
	unsigned ids[PROBE_MAX_FLOWS], n = match_flows(ctx, name, ids);
	json_t *list;

	if (n == 0)
		return ctl_fail(err, "unknown-flow", "no flow '%s' (use SRC:DST as configured, or #ID)",
				name);
	list = json_array();
	for (unsigned i = 0; i < n; i++) {
		struct probe_flow *f = &ctx->flows[ids[i]];

		if (strcmp(call->cmd, "flow/set") == 0)
			PROBE_SET(f->pps, (uint64_t)json_integer_value(json_object_get(args, "pps")));
		else
			PROBE_SET(f->paused, strcmp(call->cmd, "flow/pause") == 0);
		json_array_append_new(list, json_pack("{s:i,s:s,s:I,s:b}", "id", f->id, "flow",
						      f->name, "pps", (json_int_t)PROBE_GET(f->pps),
						      "paused", PROBE_GET(f->paused)));
	}
	*result = json_pack("{s:o}", "flows", list);
	return 0;
}

static const struct ctl_arg rx_pause_args[] = {
	{ "vm", CTL_T_STRING, true, 0, 0 },
	{ "ms", CTL_T_INT, true, 0, 60000 },
	{ NULL },
};

/* Fault injection on the guest side: the VM stops reading its RX ring for ms, as a busy or
 * descheduled guest would, so the backend's handling of a full ring can be checked. */
static int
vm_rx_pause(struct ctl_call *call, json_t *args, json_t **result, struct ctl_error *err)
{
	struct probe_ctx *ctx = call->aux;
	const char *name = json_string_value(json_object_get(args, "vm"));
	json_int_t ms = json_integer_value(json_object_get(args, "ms"));
	uint64_t start = hl_now_ns(), until = start + (uint64_t)ms * 1000000ull;
	int i = probe_find_vm(ctx, name);

	if (i < 0)
		return ctl_fail(err, "unknown-vm", "no vm '%.40s' in this probe", name);
	PROBE_SET(ctx->vms[i].rx_pause_until_ns, until);
	*result = json_pack("{s:s,s:I,s:I}", "vm", name, "start_ns", (json_int_t)start,
			    "until_ns", (json_int_t)until);
	return 0;
}

static const struct ctl_arg vm_only_args[] = {
	{ "vm", CTL_T_STRING, true, 0, 0 },
	{ NULL },
};

/* A guest driver reload: the VM's virtio device is reset and renegotiated in place. */
static int
vm_reset(struct ctl_call *call, json_t *args, json_t **result, struct ctl_error *err)
{
	struct probe_ctx *ctx = call->aux;
	const char *name = json_string_value(json_object_get(args, "vm"));
	int i = probe_find_vm(ctx, name);

	if (i < 0)
		return ctl_fail(err, "unknown-vm", "no vm '%.40s' in this probe", name);
	__atomic_store_n(&ctx->vms[i].reset_req, true, __ATOMIC_RELEASE);
	*result = json_pack("{s:s,s:I}", "vm", name, "resets_before",
			    (json_int_t)PROBE_GET(ctx->vms[i].resets));
	return 0;
}

static int
probe_stop(struct ctl_call *call, json_t *args, json_t **result, struct ctl_error *err)
{
	struct probe_ctx *ctx = call->aux;

	__atomic_store_n(&ctx->stop_reason, PROBE_STOP_CTL, __ATOMIC_RELEASE);
	*result = json_pack("{s:b}", "stopping", 1);
	return 0;
}

static const struct ctl_command probe_cmds[] = {
	{ "stats/show", "stats/show: per-VM and per-flow counters, same shape as the summary",
	  no_args, stats_show },
	{ "flow/set", "flow/set {flow: \"SRC:DST\"|\"#ID\", pps: 1..100000000}: change a flow's rate",
	  flow_set_args, flow_change },
	{ "flow/pause", "flow/pause {flow}: stop sending on a flow", flow_arg, flow_change },
	{ "flow/resume", "flow/resume {flow}: resume a paused flow", flow_arg, flow_change },
	{ "vm/rx-pause", "vm/rx-pause {vm, ms}: the VM stops reading its RX ring for ms (fault "
	  "injection)", rx_pause_args, vm_rx_pause },
	{ "vm/reset", "vm/reset {vm}: reset the VM's virtio device and renegotiate (driver reload)",
	  vm_only_args, vm_reset },
	{ "probe/stop", "probe/stop: stop sending, drain, write the summary and exit 0", no_args,
	  probe_stop },
};

/* Bind --ctl, register the probe's commands and start serving. A command that does not
 * register (its name taken or malformed) is named, and the probe does not start. */
int
probe_control_start(struct probe_ctx *ctx)
{
	struct ctl_registry *reg;
	int rc = 0;

	if (ctx->cfg.ctl_path == NULL)
		return 0;
	ctx->ctl = ctl_server_new(ctx->cfg.ctl_path, 0);
	if (ctx->ctl == NULL) {
		rc = -errno;
		fprintf(stderr, "hitless-probe: --ctl %s: %s\n", ctx->cfg.ctl_path, strerror(errno));
		return rc;
	}
	reg = ctl_server_registry(ctx->ctl);
	rc = ctl_register_table(reg, probe_cmds, sizeof(probe_cmds) / sizeof(probe_cmds[0]), ctx);
	if (rc != 0) {
		fprintf(stderr, "hitless-probe: --ctl: control command %s not registered: %s\n",
			ctl_registry_refused(reg), strerror(-rc));
		return rc;
	}
	rc = ctl_server_start(ctx->ctl);
	if (rc != 0)
		fprintf(stderr, "hitless-probe: --ctl: cannot start the server: %s\n", strerror(-rc));
	return rc;
}
