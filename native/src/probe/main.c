/* SPDX-License-Identifier: Apache-2.0
 * hitless-probe: start-up, the packet loop and shutdown.
 *
 *   hitless-probe [EAL args] -- --vm NAME,MAC,SOCKET[,server] ... --flow SRC:DST:PPS ...
 *
 * Start-up errors exit 1 (bad arguments exit 2 before the EAL starts). The run ends on
 * --duration, SIGINT/SIGTERM or probe/stop: sending stops, receiving goes on for --drain-ms,
 * then one JSON summary is printed as the last stdout line and the process exits 0.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <rte_common.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_log.h>
#include <rte_malloc.h>
#include <rte_random.h>

#include "ctl.h"
#include "probe.h"

#define LINK_POLL_NS (10 * 1000000ull)

static void
push_simple(struct probe_ctx *ctx, uint32_t type, uint32_t reason, uint64_t now)
{
	struct probe_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.reason = reason;
	ev.t_ns = now;
	probe_event_push(ctx, &ev);
}

/* Why sending should stop now, or PROBE_STOP_NONE. */
static uint32_t
stop_reason(struct probe_ctx *ctx, uint64_t now, uint64_t end_at)
{
	if (hl_quit)
		return PROBE_STOP_SIGNAL;
	if (__atomic_load_n(&ctx->stop_reason, __ATOMIC_ACQUIRE) == PROBE_STOP_CTL)
		return PROBE_STOP_CTL;
	if (now >= end_at)
		return PROBE_STOP_DURATION;
	return PROBE_STOP_NONE;
}

/* The packet loop (main lcore): receive on every port each iteration, send on the tick (and
 * every iteration for flood flows), poll links every 10 ms, and nap until the next deadline
 * unless a flood flow is running. Ends when the drain after the stop is over. */
static void
run_loop(struct probe_ctx *ctx)
{
	const struct probe_cfg *cfg = &ctx->cfg;
	uint64_t now = hl_now_ns(), next_tick = now, next_link = now + LINK_POLL_NS;
	uint64_t end_at = cfg->duration_s > 0 ? now + (uint64_t)(cfg->duration_s * 1e9) : UINT64_MAX;
	uint64_t drain_until = 0;
	uint64_t prev = now;
	bool sending = true;

	PROBE_SET(ctx->t_start, now);
	push_simple(ctx, PROBE_EV_START, 0, now);
	for (;;) {
		bool flood = false;
		uint64_t wake;

		now = hl_now_ns();
		if (now - prev > PROBE_GET(ctx->loop_max_gap_ns)) {
			PROBE_SET(ctx->loop_max_gap_ns, now - prev);
			PROBE_SET(ctx->loop_max_gap_at_ns, prev);
		}
		for (unsigned v = 0; v < ctx->n_vms; v++)
			if (__atomic_exchange_n(&ctx->vms[v].reset_req, false, __ATOMIC_ACQ_REL) &&
			    probe_port_reset(ctx, &ctx->vms[v]) != 0)
				fprintf(stderr, "hitless-probe: VM '%s': device reset failed\n",
					ctx->vms[v].name);
		probe_rx_poll(ctx, now);
		if (sending) {
			if (now >= next_tick) {
				probe_tx_tick(ctx, now);
				next_tick += cfg->tick_ns;
				if (next_tick <= now)
					next_tick = now + cfg->tick_ns;
			}
			flood = probe_tx_flood(ctx, now);
		}
		if (now >= next_link) {
			probe_links_poll(ctx, now);
			next_link = now + LINK_POLL_NS;
		}
		if (sending) {
			uint32_t r = stop_reason(ctx, now, end_at);
			if (r != PROBE_STOP_NONE) {
				sending = false;
				probe_tx_refusals_end(ctx);
				PROBE_SET(ctx->t_stop_send, now);
				drain_until = now + cfg->drain_ns;
				push_simple(ctx, PROBE_EV_STOP, r, now);
			}
		} else if (now >= drain_until) {
			break;
		}
		ctx->loops++;
		if (flood) {
			prev = now;
			continue;
		}
		wake = sending ? next_tick : RTE_MIN(now + cfg->tick_ns, drain_until);
		wake = RTE_MIN(wake, next_link);
		/* a planned nap is not a stall: the gap is measured from its planned end */
		prev = RTE_MAX(wake, now);
		if (wake > now)
			hl_sleep_ns(wake - now);
	}
}

/* Write the summary to --summary (if given); stdout is done by main as the last line. */
static void
write_summary_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");

	if (f == NULL || fprintf(f, "%s\n", s) < 0)
		fprintf(stderr, "hitless-probe: --summary %s: %s\n", path, strerror(errno));
	if (f != NULL)
		fclose(f);
}

int
main(int argc, char **argv)
{
	struct probe_ctx *ctx = calloc(1, sizeof(*ctx));
	json_t *summary;
	const char *why;
	char *s;
	int dd, rc;

	if (ctx == NULL)
		return 1;
	for (dd = 1; dd < argc && strcmp(argv[dd], "--") != 0; dd++)
		;
	if (dd == argc) {
		fprintf(stderr, "hitless-probe: missing '--' before the probe arguments (--vm ...)\n");
		probe_usage(stderr);
		return 2;
	}
	if (probe_parse_args(ctx, argc - dd, argv + dd) != 0)
		return 2;

	rte_openlog_stream(stderr); /* keep stdout for events (-) and the summary line */
	if (rte_eal_init(dd, argv) < 0)
		rte_exit(1, "hitless-probe: EAL init failed: %s\n", rte_strerror(rte_errno));
	ctx->run_id = (uint16_t)(1024 + rte_rand() % (65536 - 1024));
	/* SIGPIPE ignored: virtio_user writes to the vhost-user socket without MSG_NOSIGNAL, and a
	 * dead backend must show up as a link event, not kill the probe */
	hl_catch_quit();
	hl_tight_timer_slack();

	rc = probe_traffic_init(ctx);
	if (rc != 0)
		rte_exit(1, "hitless-probe: cannot allocate buffers: %s\n", strerror(-rc));
	if (ctx->cfg.touch_mb > 0) {
		/* kept for the probe's life: the backends see guest memory that has been used */
		void *used = rte_malloc("touched", ctx->cfg.touch_mb << 20, 4096);

		if (used == NULL)
			rte_exit(1, "hitless-probe: --touch-memory %" PRIu64 ": not that much free memory "
				 "(EAL -m)\n", ctx->cfg.touch_mb);
		memset(used, 0x5a, ctx->cfg.touch_mb << 20);
	}
	rc = probe_events_start(ctx);
	if (rc != 0) {
		why = "cannot start the event writer";
		goto fail;
	}
	rc = probe_control_start(ctx);
	if (rc != 0) {
		why = "cannot start the control socket";
		goto fail;
	}
	rc = probe_ports_init(ctx);
	if (rc != 0) {
		why = "cannot set up the VM ports";
		goto fail;
	}
	rc = probe_links_wait(ctx, &hl_quit);
	if (rc == -ETIMEDOUT) {
		why = "not every VM link came up";
		goto fail;
	}
	if (rc == 0)
		run_loop(ctx);

	summary = probe_report(ctx, hl_now_ns(), true);
	probe_events_stop(ctx); /* every event line precedes the summary */
	s = summary ? json_dumps(summary, JSON_COMPACT) : NULL;
	if (s != NULL && ctx->cfg.summary_path != NULL)
		write_summary_file(ctx->cfg.summary_path, s);
	if (ctx->ctl != NULL) {
		if (summary != NULL)
			ctl_emit(ctx->ctl, "summary", json_incref(summary));
		ctl_server_free(ctx->ctl);
	}
	probe_ports_close(ctx);
	rte_eal_cleanup();
	if (s != NULL)
		printf("%s\n", s);
	fflush(stdout);
	free(s);
	json_decref(summary);
	free(ctx->rx);
	free(ctx);
	return 0;
fail:
	/* the writer and ctl threads use EAL memory: stop them before the EAL goes away */
	probe_events_stop(ctx);
	ctl_server_free(ctx->ctl);
	ctx->ctl = NULL;
	rte_exit(1, "hitless-probe: %s\n", why);
}
