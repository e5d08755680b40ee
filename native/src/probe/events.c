/* SPDX-License-Identifier: Apache-2.0
 * Events: the packet loop pushes fixed-size records into a single-producer/single-consumer
 * rte_ring; a writer thread formats them as JSON lines ({"event":..,"data":..}) for --events
 * and emits them to control-socket subscribers. A full ring drops (and counts) the event
 * rather than stalling the loop.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setname_np */
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "ctl.h"
#include "probe.h"

#define EV_RING_SIZE 8192
#define EV_BURST 64

static const char *
stop_reason_name(uint32_t r)
{
	switch (r) {
	case PROBE_STOP_DURATION: return "duration";
	case PROBE_STOP_SIGNAL: return "signal";
	case PROBE_STOP_CTL: return "ctl";
	default: return "unknown";
	}
}

/* Turn one record into (name, data). */
static json_t *
event_data(struct probe_ctx *ctx, const struct probe_event *ev, const char **name)
{
	json_t *d, *a;

	switch (ev->type) {
	case PROBE_EV_START:
		*name = "start";
		d = json_pack("{s:I,s:i,s:i,s:I,s:I}", "t_ns", (json_int_t)ev->t_ns, "run_id",
			      ctx->run_id, "frame_size", ctx->cfg.frame_size, "gap_us",
			      (json_int_t)(ctx->cfg.gap_ns / 1000), "tick_us",
			      (json_int_t)(ctx->cfg.tick_ns / 1000));
		a = json_array();
		for (unsigned i = 0; i < ctx->n_vms; i++)
			json_array_append_new(a, json_string(ctx->vms[i].name));
		json_object_set_new(d, "vms", a);
		a = json_array();
		for (unsigned i = 0; i < ctx->n_flows; i++)
			json_array_append_new(a, json_pack("{s:s,s:I}", "flow", ctx->flows[i].name,
							   "pps",
							   (json_int_t)PROBE_GET(ctx->flows[i].pps)));
		json_object_set_new(d, "flows", a);
		return d;
	case PROBE_EV_STOP:
		*name = "stop";
		return json_pack("{s:I,s:s}", "t_ns", (json_int_t)ev->t_ns, "reason",
				 stop_reason_name(ev->reason));
	case PROBE_EV_LINK:
		*name = "link";
		return json_pack("{s:s,s:b,s:I}", "vm", ctx->vms[ev->vm].name, "up", ev->up,
				 "t_ns", (json_int_t)ev->t_ns);
	case PROBE_EV_GAP:
		*name = "gap";
		return probe_gap_json(ctx, &ctx->rx[ev->rx_idx], &ev->gap, false);
	case PROBE_EV_LATE: {
		char src[RTE_ETHER_ADDR_FMT_SIZE + HL_NAME_MAX], flow[128];
		const struct probe_rx *e = &ctx->rx[ev->rx_idx];

		*name = "late";
		probe_rx_names(ctx, e, src, sizeof(src), flow, sizeof(flow));
		return json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "flow", flow, "src", src, "rx_vm",
				 ctx->vms[e->vm].name, "sent_ns", (json_int_t)ev->gap.start_ns,
				 "at_ns", (json_int_t)ev->gap.end_ns, "seq", (json_int_t)ev->gap.seq_after,
				 "behind", (json_int_t)(ev->gap.seq_before - ev->gap.seq_after));
	}
	case PROBE_EV_REFUSED: {
		const struct probe_flow *f = &ctx->flows[ev->flow];

		/* frames first_seq.. of the flow its sender's port refused (counted lost) */
		*name = "refused";
		return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:s}", "flow", f->name, "src",
				 ctx->vms[f->src].name, "start_ns", (json_int_t)ev->gap.start_ns,
				 "end_ns", (json_int_t)ev->gap.end_ns, "first_seq",
				 (json_int_t)ev->gap.seq_before, "frames",
				 (json_int_t)ev->gap.seq_after, "cause",
				 ev->reason ? "no_mbufs" : "ring_full");
	}
	}
	*name = "unknown";
	return json_object();
}

static void
write_event(struct probe_ctx *ctx, const struct probe_event *ev)
{
	const char *name;
	json_t *data = event_data(ctx, ev, &name);

	if (data == NULL)
		return;
	if (ctx->events_out != NULL) {
		json_t *line = json_pack("{s:s,s:O}", "event", name, "data", data);
		char *s = line ? json_dumps(line, JSON_COMPACT) : NULL;

		if (s != NULL)
			fprintf(ctx->events_out, "%s\n", s);
		free(s);
		json_decref(line);
	}
	if (ctx->ctl != NULL)
		ctl_emit(ctx->ctl, name, data); /* steals data */
	else
		json_decref(data);
}

/* Writer thread: drain the ring in bursts, nap 2 ms when it is empty; after stop is raised,
 * exit only once the ring is empty so no event is lost. */
static void *
writer_main(void *arg)
{
	struct probe_ctx *ctx = arg;
	struct probe_event evs[EV_BURST];

	for (;;) {
		unsigned n = rte_ring_sc_dequeue_burst_elem(ctx->ev_ring, evs, sizeof(evs[0]),
							    EV_BURST, NULL);
		for (unsigned i = 0; i < n; i++)
			write_event(ctx, &evs[i]);
		if (n > 0) {
			if (ctx->events_out != NULL)
				fflush(ctx->events_out);
			continue;
		}
		if (__atomic_load_n(&ctx->writer_stop, __ATOMIC_ACQUIRE))
			break;
		hl_sleep_ns(2000000);
	}
	return NULL;
}

/* Open --events (a file, or "-" for stdout), create the ring and start the writer. */
int
probe_events_start(struct probe_ctx *ctx)
{
	int rc;

	if (ctx->cfg.events_path != NULL) {
		if (strcmp(ctx->cfg.events_path, "-") == 0) {
			ctx->events_out = stdout;
		} else {
			ctx->events_out = fopen(ctx->cfg.events_path, "w");
			if (ctx->events_out == NULL) {
				rc = -errno;
				fprintf(stderr, "hitless-probe: --events %s: %s\n",
					ctx->cfg.events_path, strerror(errno));
				return rc;
			}
		}
	}
	ctx->ev_ring = rte_ring_create_elem("probe_events", sizeof(struct probe_event),
					    EV_RING_SIZE, SOCKET_ID_ANY,
					    RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (ctx->ev_ring == NULL)
		return -rte_errno;
	rc = pthread_create(&ctx->writer, NULL, writer_main, ctx);
	if (rc != 0)
		return -rc;
	pthread_setname_np(ctx->writer, "probe-events");
	ctx->writer_started = true;
	return 0;
}

/* From the packet loop (the ring's only producer): never blocks, never allocates. */
void
probe_event_push(struct probe_ctx *ctx, const struct probe_event *ev)
{
	if (ctx->ev_ring == NULL ||
	    rte_ring_sp_enqueue_elem(ctx->ev_ring, (void *)(uintptr_t)ev, sizeof(*ev)) != 0)
		PROBE_ADD(ctx->events_dropped, 1);
}

/* Flush every pending event, stop the writer and close --events. */
void
probe_events_stop(struct probe_ctx *ctx)
{
	if (ctx->writer_started) {
		__atomic_store_n(&ctx->writer_stop, true, __ATOMIC_RELEASE);
		pthread_join(ctx->writer, NULL);
		ctx->writer_started = false;
	}
	if (ctx->events_out != NULL && ctx->events_out != stdout)
		fclose(ctx->events_out);
	else if (ctx->events_out != NULL)
		fflush(stdout);
	ctx->events_out = NULL;
	rte_ring_free(ctx->ev_ring);
	ctx->ev_ring = NULL;
}
