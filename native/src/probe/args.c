/* SPDX-License-Identifier: Apache-2.0
 * Command-line parsing for hitless-probe (the part after "--"). Every error names the argument
 * and the value; the caller exits 2 on any error.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"

#define ERR(...) (fprintf(stderr, "hitless-probe: " __VA_ARGS__), fputc('\n', stderr), -EINVAL)

void
probe_usage(FILE *f)
{
	fprintf(f,
		"usage: hitless-probe [EAL args] -- --vm NAME,MAC,SOCKET[,server][,packed][,queues=N] ...\n"
		"         --flow SRC:DST:PPS ... --reflect SRC:MAC:PPS ...\n"
		"         [--duration SEC] [--gap-us N] [--tick-us N]\n"
		"         [--frame-size N] [--ctl PATH] [--events PATH|-] [--summary PATH]\n"
		"         [--drain-ms N] [--connect-timeout-ms N] [--touch-memory MB]\n"
		"  --vm       one virtio_user port; ',server' makes the probe the vhost-user server,\n"
		"             ',packed' uses packed virtqueues, ',queues=N' N queue pairs (1-8: the\n"
		"             VM's flows take its transmit queues in turn; every receive queue is read)\n"
		"  --flow     SRC = local VM, DST = local VM or MAC, PPS = frames/s (0 = flood)\n"
		"  --reflect  a flow to a guest at MAC that sends every frame back (MACs swapped):\n"
		"             measured where it returns, at SRC (loss and break through the guest)\n"
		"  --duration run time in seconds (default: until SIGINT/SIGTERM or probe/stop)\n"
		"  --gap-us   receive gaps above this are recorded (default 1000)\n"
		"  --tick-us  sending timer (default 100)\n"
		"  --frame-size  L2 frame length without FCS, 64..1500 (default 64)\n"
		"  --drain-ms keep receiving this long after sending stops (default 300)\n"
		"  --connect-timeout-ms  wait this long for every VM link to come up (default 10000)\n"
		"  --touch-memory  write this many MB of the probe's memory (its VMs' guest memory,\n"
		"             EAL -m) at start, as a guest that has used it (default 0)\n");
}

/* Parse a whole decimal integer in [min, max]; 0 or -EINVAL. */
static int
parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	if (s == NULL || *s == '\0' || *s == '-' || *s == '+')
		return ERR("%s: expected an integer, got '%s'", opt, s ? s : "");
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return ERR("%s: expected an integer, got '%s'", opt, s);
	if (v < min || v > max)
		return ERR("%s: %llu is out of range [%llu, %llu]", opt, v,
			   (unsigned long long)min, (unsigned long long)max);
	*out = v;
	return 0;
}

int
probe_find_vm(const struct probe_ctx *ctx, const char *name)
{
	for (unsigned i = 0; i < ctx->n_vms; i++)
		if (strcmp(ctx->vms[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* --vm NAME,MAC,SOCKET[,server][,packed][,queues=N]: validates each field and that names and
 * MACs are unique. server: the probe is the vhost-user server; packed: packed virtqueues;
 * queues: queue pairs. */
static int
parse_vm(struct probe_ctx *ctx, const char *val)
{
	char buf[512], *fields[7];
	int n = 0;
	struct probe_vm *vm;

	if (ctx->n_vms == PROBE_MAX_VMS)
		return ERR("--vm: at most %d VMs", PROBE_MAX_VMS);
	if (strlen(val) >= sizeof(buf))
		return ERR("--vm '%s': too long", val);
	strcpy(buf, val);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == 6)
			return ERR("--vm '%s': expected NAME,MAC,SOCKET[,server][,packed][,queues=N]",
				   val);
		fields[n++] = t;
	}
	if (n < 3)
		return ERR("--vm '%s': expected NAME,MAC,SOCKET[,server][,packed][,queues=N]", val);
	vm = &ctx->vms[ctx->n_vms];
	memset(vm, 0, sizeof(*vm));
	vm->nq = 1;
	if (!hl_valid_name(fields[0]))
		return ERR("--vm '%s': bad VM name '%s' (1..32 of [A-Za-z0-9_.-])", val, fields[0]);
	if (probe_find_vm(ctx, fields[0]) >= 0)
		return ERR("--vm '%s': duplicate VM name '%s'", val, fields[0]);
	if (rte_ether_unformat_addr(fields[1], &vm->mac) != 0 ||
	    !rte_is_unicast_ether_addr(&vm->mac) || rte_is_zero_ether_addr(&vm->mac))
		return ERR("--vm '%s': bad MAC '%s' (need a unicast XX:XX:XX:XX:XX:XX)", val,
			   fields[1]);
	for (unsigned i = 0; i < ctx->n_vms; i++)
		if (rte_is_same_ether_addr(&ctx->vms[i].mac, &vm->mac))
			return ERR("--vm '%s': MAC %s already used by VM '%s'", val, fields[1],
				   ctx->vms[i].name);
	if (strlen(fields[2]) >= sizeof(vm->socket))
		return ERR("--vm '%s': socket path longer than %zu bytes", val,
			   sizeof(vm->socket) - 1);
	for (int i = 3; i < n; i++) {
		if (strcmp(fields[i], "server") == 0)
			vm->server = true;
		else if (strcmp(fields[i], "packed") == 0)
			vm->packed = true;
		else if (strncmp(fields[i], "queues=", 7) == 0) {
			uint64_t q;
			char opt[160];

			snprintf(opt, sizeof(opt), "--vm '%s': queues", val);
			if (parse_u64(opt, fields[i] + 7, 1, PROBE_MAX_QUEUES, &q) != 0)
				return -EINVAL;
			vm->nq = (uint16_t)q;
		} else
			return ERR("--vm '%s': unknown option '%s' (server, packed, queues=N)", val,
				   fields[i]);
	}
	snprintf(vm->name, sizeof(vm->name), "%s", fields[0]);
	snprintf(vm->socket, sizeof(vm->socket), "%s", fields[2]);
	vm->ip = probe_mac_ip(&vm->mac);
	ctx->n_vms++;
	return 0;
}

/* --flow SRC:DST:PPS. DST may be a MAC (which itself has colons): split at the first and the
 * last colon. A MAC that belongs to a local VM is treated as that VM. reflect (--reflect):
 * DST must be a MAC outside this probe, and the flow is received back at SRC. */
static int
parse_flow(struct probe_ctx *ctx, const char *val, bool reflect)
{
	char buf[128], *first, *last, *dst;
	struct probe_flow *f;
	uint64_t pps;
	int src, d;

	if (ctx->n_flows == PROBE_MAX_FLOWS)
		return ERR("--flow: at most %d flows", PROBE_MAX_FLOWS);
	if (strlen(val) >= sizeof(buf))
		return ERR("--flow '%s': too long", val);
	strcpy(buf, val);
	first = strchr(buf, ':');
	last = strrchr(buf, ':');
	if (first == NULL || first == last)
		return ERR("--flow '%s': expected SRC:DST:PPS", val);
	*first = *last = '\0';
	dst = first + 1;
	src = probe_find_vm(ctx, buf);
	if (src < 0)
		return ERR("--flow '%s': source '%s' is not a --vm of this probe", val, buf);
	{
		char opt[160];
		snprintf(opt, sizeof(opt), "--flow '%s': PPS", val);
		if (parse_u64(opt, last + 1, 0, PROBE_MAX_PPS, &pps) != 0)
			return -EINVAL;
	}
	f = &ctx->flows[ctx->n_flows];
	d = probe_find_vm(ctx, dst);
	if (d < 0) {
		if (rte_ether_unformat_addr(dst, &f->dst_mac) != 0)
			return ERR("--flow '%s': destination '%s' is neither a local VM nor a MAC",
				   val, dst);
		if (!rte_is_unicast_ether_addr(&f->dst_mac) || rte_is_zero_ether_addr(&f->dst_mac))
			return ERR("--flow '%s': destination MAC '%s' is not unicast", val, dst);
		for (unsigned i = 0; i < ctx->n_vms; i++)
			if (rte_is_same_ether_addr(&ctx->vms[i].mac, &f->dst_mac))
				d = (int)i;
	} else {
		f->dst_mac = ctx->vms[d].mac;
	}
	if (d == src)
		return ERR("--flow '%s': source and destination are the same VM", val);
	if (reflect && d >= 0)
		return ERR("--reflect '%s': the reflecting guest must be a MAC outside this probe", val);
	f->reflect = reflect;
	f->id = (uint16_t)ctx->n_flows;
	f->src = (uint16_t)src;
	f->dst = d;
	f->pps = pps;
	f->rx_idx = -1;
	snprintf(f->name, sizeof(f->name), "%s:%s", buf, dst);
	ctx->n_flows++;
	return 0;
}

/* Parse the application arguments (argv[0] is a program name, not an option). Flows are
 * resolved after all VMs are known, so --flow may come before --vm. */
int
probe_parse_args(struct probe_ctx *ctx, int argc, char **argv)
{
	const char *flows[PROBE_MAX_FLOWS];
	bool reflect[PROBE_MAX_FLOWS];
	unsigned n_flows = 0;
	uint64_t v = 0;
	int rc;

	ctx->cfg = (struct probe_cfg){ .gap_ns = 1000000, .tick_ns = 100000,
				       .drain_ns = 300000000ull,
				       .connect_timeout_ns = 10000000000ull,
				       .frame_size = PROBE_FRAME_MIN };
	for (int i = 1; i < argc; i++) {
		char optbuf[64];
		const char *opt = argv[i], *val, *eq = strchr(argv[i], '=');

		if (strcmp(opt, "-h") == 0 || strcmp(opt, "--help") == 0) {
			probe_usage(stdout);
			exit(0);
		}
		if (strncmp(opt, "--", 2) != 0)
			return ERR("unexpected argument '%s' (see --help)", opt);
		if (eq != NULL && (size_t)(eq - opt) < sizeof(optbuf)) {
			snprintf(optbuf, sizeof(optbuf), "%.*s", (int)(eq - opt), opt);
			opt = optbuf;
			val = eq + 1;
		} else {
			if (i + 1 >= argc)
				return ERR("%s: missing value", opt);
			val = argv[++i];
		}
		if (strcmp(opt, "--vm") == 0) {
			rc = parse_vm(ctx, val);
		} else if (strcmp(opt, "--flow") == 0 || strcmp(opt, "--reflect") == 0) {
			if (n_flows == PROBE_MAX_FLOWS)
				return ERR("%s: at most %d flows", opt, PROBE_MAX_FLOWS);
			reflect[n_flows] = opt[2] == 'r';
			flows[n_flows++] = val;
			rc = 0;
		} else if (strcmp(opt, "--duration") == 0) {
			char *end;
			errno = 0;
			ctx->cfg.duration_s = strtod(val, &end);
			rc = 0;
			if (errno || *end || end == val || !(ctx->cfg.duration_s > 0) ||
			    ctx->cfg.duration_s > 1e7)
				rc = ERR("--duration: expected seconds > 0, got '%s'", val);
		} else if (strcmp(opt, "--gap-us") == 0) {
			rc = parse_u64(opt, val, 1, 60000000, &v);
			ctx->cfg.gap_ns = v * 1000;
		} else if (strcmp(opt, "--tick-us") == 0) {
			rc = parse_u64(opt, val, 10, 100000, &v);
			ctx->cfg.tick_ns = v * 1000;
		} else if (strcmp(opt, "--frame-size") == 0) {
			rc = parse_u64(opt, val, PROBE_FRAME_MIN, PROBE_FRAME_MAX, &v);
			ctx->cfg.frame_size = (uint32_t)v;
		} else if (strcmp(opt, "--drain-ms") == 0) {
			rc = parse_u64(opt, val, 0, 60000, &v);
			ctx->cfg.drain_ns = v * 1000000;
		} else if (strcmp(opt, "--touch-memory") == 0) {
			rc = parse_u64(opt, val, 0, 1u << 20, &ctx->cfg.touch_mb);
		} else if (strcmp(opt, "--connect-timeout-ms") == 0) {
			rc = parse_u64(opt, val, 0, 3600000, &v);
			ctx->cfg.connect_timeout_ns = v * 1000000;
		} else if (strcmp(opt, "--ctl") == 0) {
			ctx->cfg.ctl_path = val;
			rc = strlen(val) >= 108 ? ERR("--ctl: path longer than 107 bytes") : 0;
		} else if (strcmp(opt, "--events") == 0) {
			ctx->cfg.events_path = val;
			rc = 0;
		} else if (strcmp(opt, "--summary") == 0) {
			ctx->cfg.summary_path = val;
			rc = 0;
		} else {
			rc = ERR("unknown option '%s' (see --help)", opt);
		}
		if (rc != 0)
			return rc;
	}
	if (ctx->n_vms == 0)
		return ERR("--vm: at least one VM is required");
	for (unsigned i = 0; i < n_flows; i++) {
		struct probe_flow *f;

		rc = parse_flow(ctx, flows[i], reflect[i]);
		if (rc != 0)
			return rc;
		f = &ctx->flows[ctx->n_flows - 1];
		/* frames 1/pps apart cannot be told from breaks unless the threshold is wider */
		if (f->pps != 0 && ctx->cfg.gap_ns <= 2 * 1000000000ull / f->pps)
			fprintf(stderr, "hitless-probe: warning: --flow '%s': frames are %llu us apart, "
				"--gap-us %llu will report normal spacing as gaps\n", flows[i],
				(unsigned long long)(1000000 / f->pps),
				(unsigned long long)(ctx->cfg.gap_ns / 1000));
	}
	return 0;
}
