/* SPDX-License-Identifier: Apache-2.0
 * The probe's results as JSON: the same object serves stats/show (live, read while the loop
 * runs) and the final summary. RFC 6201 break time is given both ways: frame-loss method
 * (lost / offered rate) and timestamp method (longest receive gap).
 */
#include <stdlib.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_mempool.h>

#include "probe.h"

static json_t *
mac_json(const struct rte_ether_addr *mac)
{
	char buf[RTE_ETHER_ADDR_FMT_SIZE];

	rte_ether_format_addr(buf, sizeof(buf), mac);
	return json_string(buf);
}

static int
local_vm_by_mac(const struct probe_ctx *ctx, const struct rte_ether_addr *mac)
{
	for (unsigned i = 0; i < ctx->n_vms; i++)
		if (rte_is_same_ether_addr(&ctx->vms[i].mac, mac))
			return (int)i;
	return -1;
}

/* Display names of a receive key: the source (local VM name, else its MAC) and the flow
 * ("SRC:DST" as configured for a local flow, else "SRC:RXVM"). */
void
probe_rx_names(struct probe_ctx *ctx, const struct probe_rx *e, char *src, size_t srclen,
	       char *flow, size_t flowlen)
{
	int v = local_vm_by_mac(ctx, &e->src);

	if (v >= 0)
		snprintf(src, srclen, "%s", ctx->vms[v].name);
	else
		rte_ether_format_addr(src, (uint16_t)srclen, &e->src);
	if (e->flow >= 0)
		snprintf(flow, flowlen, "%s", ctx->flows[e->flow].name);
	else
		snprintf(flow, flowlen, "%s:%s", src, ctx->vms[e->vm].name);
}

/* One gap record: {flow, flow_id, src, rx_vm, start_ns, end_ns, gap_us, lost_in_gap,
 * seq_before, seq_after[, open]}. An open gap is one still running when sending stopped. */
json_t *
probe_gap_json(struct probe_ctx *ctx, const struct probe_rx *e, const struct probe_gap *g,
	       bool open)
{
	char src[RTE_ETHER_ADDR_FMT_SIZE + HL_NAME_MAX], flow[128];
	uint64_t lost = g->seq_after > g->seq_before ? g->seq_after - g->seq_before - 1 : 0;
	json_t *o;

	probe_rx_names(ctx, e, src, sizeof(src), flow, sizeof(flow));
	o = json_pack("{s:s,s:i,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "flow", flow, "flow_id",
		      e->flow_id, "src", src, "rx_vm", ctx->vms[e->vm].name, "start_ns",
		      (json_int_t)g->start_ns, "end_ns", (json_int_t)g->end_ns, "gap_us",
		      (json_int_t)((g->end_ns - g->start_ns) / 1000), "lost_in_gap",
		      (json_int_t)lost, "seq_before", (json_int_t)g->seq_before, "seq_after",
		      (json_int_t)g->seq_after);
	/* how much of the gap the sender itself caused (it did not send): a receive gap with a
	 * matching tx gap is a stalled sender, not a broken path */
	if (o != NULL && g->tx_after_ns > g->tx_before_ns && g->tx_before_ns != 0)
		json_object_set_new(o, "tx_gap_us",
				    json_integer((json_int_t)((g->tx_after_ns - g->tx_before_ns) / 1000)));
	if (o != NULL && open)
		json_object_set_new(o, "open", json_true());
	return o;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Receive-side metrics of key e into o. offered: frames the sender offered (known for local
 * flows, inferred as highest seq + 1 otherwise); rate: offered rate for the frame-loss
 * method; send_end: when sending stopped (0 = unknown), used to close a gap that was still
 * open at the end (e.g. a backend that never came back). */
static void
add_rx_metrics(struct probe_ctx *ctx, json_t *o, struct probe_rx *e, uint64_t offered,
	       double rate, uint64_t send_start, uint64_t send_end)
{
	uint64_t count = __atomic_load_n(&e->gap_count, __ATOMIC_ACQUIRE);
	uint64_t received = PROBE_GET(e->received), dup = PROBE_GET(e->dup);
	uint64_t unique = received - dup, lost = offered > unique ? offered - unique : 0;
	uint64_t max_gap = PROBE_GET(e->max_gap_ns), last = PROBE_GET(e->last_ns);
	uint64_t first = PROBE_GET(e->first_ns), kept = RTE_MIN(count, (uint64_t)PROBE_GAPS_KEPT);
	uint64_t nsamp = RTE_MIN(count, (uint64_t)PROBE_GAP_SAMPLES);
	uint32_t *samp = malloc((nsamp + 1) * sizeof(*samp));
	json_t *gaps = json_array();
	uint64_t from = received ? last : send_start;

	for (uint64_t i = 0; i < kept; i++)
		json_array_append_new(gaps, probe_gap_json(ctx, e, &e->gaps[i], false));
	if (samp != NULL)
		memcpy(samp, e->gap_us, nsamp * sizeof(*samp));
	/* a gap still open when sending stopped: nothing arrived after `from` */
	if (send_end != 0 && from != 0 && send_end > from + ctx->cfg.gap_ns) {
		struct probe_gap g = { from, send_end, received ? PROBE_GET(e->last_seq) : 0,
				       offered, 0, 0 };
		json_t *gj = probe_gap_json(ctx, e, &g, true);

		if (received == 0)
			json_object_set_new(gj, "seq_before", json_null());
		/* listed even when the kept records are full (a run with many short gaps before
		 * it): the gap still open at the end is the one a reader must not miss */
		json_array_append_new(gaps, gj);
		count++;
		max_gap = RTE_MAX(max_gap, send_end - from);
		if (samp != NULL)
			samp[nsamp++] = (uint32_t)((send_end - from) / 1000);
	}
	json_object_set_new(o, "received", json_integer((json_int_t)received));
	json_object_set_new(o, "lost", json_integer((json_int_t)lost));
	json_object_set_new(o, "missing", json_integer((json_int_t)PROBE_GET(e->missing)));
	json_object_set_new(o, "late", json_integer((json_int_t)PROBE_GET(e->late)));
	json_object_set_new(o, "dup", json_integer((json_int_t)dup));
	json_object_set_new(o, "reordered", json_integer((json_int_t)PROBE_GET(e->reordered)));
	json_object_set_new(o, "gaps", gaps);
	json_object_set_new(o, "gap_count", json_integer((json_int_t)count));
	json_object_set_new(o, "max_gap_us", json_integer((json_int_t)(max_gap / 1000)));
	if (samp != NULL && nsamp > 0) {
		qsort(samp, nsamp, sizeof(*samp), cmp_u32);
		json_object_set_new(o, "gap_p50_us", json_integer(samp[(nsamp - 1) * 50 / 100]));
		json_object_set_new(o, "gap_p99_us", json_integer(samp[(nsamp - 1) * 99 / 100]));
	} else {
		json_object_set_new(o, "gap_p50_us", json_integer(0));
		json_object_set_new(o, "gap_p99_us", json_integer(0));
	}
	free(samp);
	json_object_set_new(o, "break_ms_loss", json_real(rate > 0 ? lost * 1000.0 / rate : 0));
	json_object_set_new(o, "break_ms_timestamp", json_real(max_gap / 1e6));
	json_object_set_new(o, "rate_rx_pps",
			    json_real(last > first ? (received - 1) * 1e9 / (double)(last - first)
						   : 0));
	json_object_set_new(o, "latency_us_avg",
			    json_real(received ? PROBE_GET(e->lat_sum_ns) / 1e3 / received : 0));
	json_object_set_new(o, "latency_us_max",
			    json_real(PROBE_GET(e->lat_max_ns) / 1e3));
}

/* One configured (sending) flow; receive metrics when its destination is local. */
static json_t *
flow_json(struct probe_ctx *ctx, struct probe_flow *f, uint64_t now, bool final)
{
	uint64_t offered = PROBE_GET(f->next_seq), pps = PROBE_GET(f->pps);
	uint64_t start = PROBE_GET(f->first_tx_ns);
	uint64_t stop = PROBE_GET(ctx->t_stop_send), end = final && stop ? stop : now;
	double tx_rate = start && end > start ? offered * 1e9 / (double)(end - start) : 0;
	json_t *o;

	o = json_pack("{s:i,s:s,s:s,s:o,s:o,s:I,s:b,s:b,s:I,s:I,s:I,s:f,s:s}", "id", f->id,
		      "src", ctx->vms[f->src].name, "dst", strchr(f->name, ':') + 1, "src_mac",
		      mac_json(&ctx->vms[f->src].mac), "dst_mac", mac_json(&f->dst_mac), "pps",
		      (json_int_t)pps, "flood", pps == 0, "paused", PROBE_GET(f->paused),
		      "offered", (json_int_t)offered, "tx", (json_int_t)PROBE_GET(f->tx),
		      "tx_refused", (json_int_t)PROBE_GET(f->tx_refused), "rate_tx_pps", tx_rate,
		      "rx_side", f->rx_idx >= 0 ? "local" : "remote");
	if (o == NULL)
		return NULL;
	json_object_set_new(o, "reflect", json_boolean(f->reflect));
	json_object_set_new(o, "unsent_late", json_integer((json_int_t)PROBE_GET(f->unsent_late)));
	json_object_set_new(o, "txq", json_integer(f->txq));
	if (f->rx_idx >= 0)
		add_rx_metrics(ctx, o, &ctx->rx[f->rx_idx], offered, pps ? (double)pps : tx_rate,
			       start, final ? stop : 0);
	return o;
}

/* A key that is no local flow's intended receiver: a flow from another probe process (or a
 * local flow delivered to the wrong VM). Offered is inferred from the highest sequence. */
static json_t *
rx_only_json(struct probe_ctx *ctx, struct probe_rx *e)
{
	char src[RTE_ETHER_ADDR_FMT_SIZE + HL_NAME_MAX], flow[128];
	uint64_t offered = PROBE_GET(e->max_seq) + 1, first = PROBE_GET(e->first_ns);
	uint64_t last = PROBE_GET(e->last_ns);
	bool misdelivered = local_vm_by_mac(ctx, &e->src) >= 0;
	json_t *o;

	probe_rx_names(ctx, e, src, sizeof(src), flow, sizeof(flow));
	o = json_pack("{s:s,s:s,s:o,s:i,s:i,s:b,s:b,s:I,s:b}", "src", src, "dst",
		      ctx->vms[e->vm].name, "src_mac", mac_json(&e->src), "flow_id", e->flow_id,
		      "run_id", e->run_id, "remote", !misdelivered, "misdelivered", misdelivered,
		      "offered", (json_int_t)offered, "offered_inferred", 1);
	if (o == NULL)
		return NULL;
	json_object_set_new(o, "rx_side", json_string("local"));
	add_rx_metrics(ctx, o, e, offered,
		       last > first ? offered * 1e9 / (double)(last - first) : 0, 0, 0);
	return o;
}

static void
total_add(json_t *totals, json_t *flow, const char *key)
{
	json_t *v = json_object_get(flow, key), *t = json_object_get(totals, key);

	if (json_is_integer(v))
		json_integer_set(t, json_integer_value(t) + json_integer_value(v));
}

/* The whole report. final: sending has stopped and the drain is over (closes open gaps). */
json_t *
probe_report(struct probe_ctx *ctx, uint64_t now, bool final)
{
	static const char *const sums[] = { "offered", "received", "lost", "dup", "reordered",
					    "gap_count" };
	uint64_t t0 = PROBE_GET(ctx->t_start), stop = PROBE_GET(ctx->t_stop_send);
	uint64_t t1 = stop ? stop : now;
	json_t *vms = json_object(), *flows = json_array(), *totals = json_object();
	json_t *remote_offered = json_integer(0), *r;
	uint64_t max_gap_us = 0;
	unsigned n_rx = __atomic_load_n(&ctx->n_rx, __ATOMIC_ACQUIRE);
	uint64_t stall_at = PROBE_GET(ctx->loop_max_gap_at_ns);
	struct rte_eth_stats es;

	for (unsigned i = 0; i < ctx->n_vms; i++) {
		struct probe_vm *vm = &ctx->vms[i];

		json_object_set_new(
			vms, vm->name,
			json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:o,s:s,s:b,s:I}", "rx",
				  (json_int_t)PROBE_GET(vm->rx), "tx", (json_int_t)PROBE_GET(vm->tx),
				  "tx_refused", (json_int_t)PROBE_GET(vm->tx_refused), "foreign",
				  (json_int_t)PROBE_GET(vm->foreign), "untracked",
				  (json_int_t)PROBE_GET(vm->untracked), "link_down",
				  (json_int_t)PROBE_GET(vm->link_down), "link_up",
				  PROBE_GET(vm->link_up), "mac", mac_json(&vm->mac), "socket",
				  vm->socket, "server", vm->server, "resets",
				  (json_int_t)PROBE_GET(vm->resets)));
		json_object_set_new(json_object_get(vms, vm->name), "queues", json_integer(vm->nq));
		/* receive buffers the virtio driver could not post for want of mbufs */
		if (rte_eth_stats_get(vm->port, &es) == 0)
			json_object_set_new(json_object_get(vms, vm->name), "rx_nombuf",
					    json_integer((json_int_t)es.rx_nombuf));
	}
	for (unsigned i = 0; i < sizeof(sums) / sizeof(sums[0]); i++)
		json_object_set_new(totals, sums[i], json_integer(0));
	for (unsigned i = 0; i < ctx->n_flows; i++)
		json_array_append_new(flows, flow_json(ctx, &ctx->flows[i], now, final));
	for (unsigned i = 0; i < n_rx; i++)
		if (ctx->rx[i].flow < 0)
			json_array_append_new(flows, rx_only_json(ctx, &ctx->rx[i]));
	for (size_t i = 0; i < json_array_size(flows); i++) {
		json_t *f = json_array_get(flows, i);

		if (json_object_get(f, "received") == NULL) { /* destination in another process */
			json_integer_set(remote_offered,
					 json_integer_value(remote_offered) +
						 json_integer_value(json_object_get(f, "offered")));
			continue;
		}
		for (unsigned k = 0; k < sizeof(sums) / sizeof(sums[0]); k++)
			total_add(totals, f, sums[k]);
		max_gap_us = RTE_MAX(max_gap_us,
				     (uint64_t)json_integer_value(json_object_get(f, "max_gap_us")));
	}
	json_object_set_new(totals, "offered_to_remote", remote_offered);
	json_object_set_new(totals, "max_gap_us", json_integer((json_int_t)max_gap_us));
	r = json_pack("{s:f,s:s,s:i,s:i,s:I,s:I,s:I,s:o,s:o,s:o}", "duration_s",
		      t0 && t1 > t0 ? (t1 - t0) / 1e9 : 0.0, "state",
		      final ? "done" : !t0 ? "connecting" : stop ? "draining" : "running",
		      "run_id", ctx->run_id, "frame_size", ctx->cfg.frame_size, "gap_us",
		      (json_int_t)(ctx->cfg.gap_ns / 1000), "tick_us",
		      (json_int_t)(ctx->cfg.tick_ns / 1000), "events_dropped",
		      (json_int_t)PROBE_GET(ctx->events_dropped), "vms", vms, "flows", flows,
		      "totals", totals);
	json_object_set_new(r, "meter",
			    json_pack("{s:I,s:I,s:I}", "loop_max_stall_us",
				      (json_int_t)(PROBE_GET(ctx->loop_max_gap_ns) / 1000),
				      "loop_max_stall_at_us",
				      (json_int_t)(t0 && stall_at > t0 ? (stall_at - t0) / 1000 : 0),
				      "mbufs_free", (json_int_t)rte_mempool_avail_count(ctx->pool)));
	return r;
}
