/* SPDX-License-Identifier: Apache-2.0
 * Moving a live session between generations (DESIGN.md §2).
 *
 * Pre-load: a fresh connection to the target generation gets everything up to ring start
 * (features, owner, memory table, ring sizes, addresses, eventfds, status without DRIVER_OK),
 * so the costly part — the target mapping guest memory — happens outside the break.
 *
 * Handoff: with the keeper lock held (no frontend request pending, the frontend not read),
 * GET_VRING_BASE each running ring on the old generation — the first stops its device, and the
 * generation drains what it holds for the guest before answering — then give the target the
 * positions, enable the rings, give the final status, and write once to every kick and call
 * eventfd so interrupt-driven guests and backends wake. If the target fails on the way, the
 * rings are restarted on the old generation with the same positions.
 *
 * Failover: the serving generation is dead, so the positions come from guest memory (split
 * rings: used->idx). Packed rings carry their position only in the backend's state: a packed
 * session cannot fail over and is reported as down.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keeper.h"

struct sender {
	struct kp_vm *vm;
	int gi;
	int err;
	uint32_t request;
	/* pipelined: requests sent whose replies are still to be read, in order */
	bool pipelined;
	uint32_t inflight[64];
	int n_inflight;
};

/* Replay callback: ask for an ack on every message when REPLY_ACK is on, so a failing target
 * is noticed at the message that failed. */
static int
send_to_gen(void *arg, struct vu_msg *m)
{
	struct sender *s = arg;
	int rc;

	if (s->vm->st.protocol_features & (1ull << VU_PF_REPLY_ACK))
		m->flags |= VU_FLAG_NEED_REPLY;
	s->request = m->request;
	if (!s->pipelined)
		return s->err = kp_backend_call(s->vm, s->gi, m, NULL);
	rc = kp_backend_send(s->vm, s->gi, m);
	if (rc < 0)
		return s->err = rc;
	if (rc == 1 && s->n_inflight < (int)(sizeof(s->inflight) / sizeof(s->inflight[0])))
		s->inflight[s->n_inflight++] = m->request;
	return 0;
}

/* Read the replies of a pipelined replay, in order; the first failure is the result. */
static int
collect_all(struct sender *s)
{
	for (int i = 0; i < s->n_inflight; i++) {
		int rc = kp_backend_collect(s->vm, s->gi, s->inflight[i], NULL);
		if (rc != 0) {
			s->request = s->inflight[i];
			s->n_inflight = 0;
			return s->err = rc;
		}
	}
	s->n_inflight = 0;
	return 0;
}

static json_t *
timing_json(const struct kp_timing *t)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "request_ns", (json_int_t)t->request_ns,
			 "quiesce_ns", (json_int_t)t->quiesce_ns, "bases_ns",
			 (json_int_t)t->bases_ns, "replayed_ns", (json_int_t)t->replayed_ns,
			 "resumed_ns", (json_int_t)t->resumed_ns, "window_ns",
			 (json_int_t)(t->resumed_ns - t->quiesce_ns));
}

/* Ask the generation what it offers and refuse it when it lacks anything the frontend
 * negotiated: the guest would lose a feature it relies on. */
static int
check_target(struct kp_vm *vm, int gi, struct ctl_error *err)
{
	struct vu_msg m, r;
	uint64_t missing;
	int rc;

	vu_msg_init(&m, VU_GET_FEATURES, 0);
	if ((rc = kp_backend_call(vm, gi, &m, &r)) != 0)
		return ctl_fail(err, "target-failed", "generation '%s' did not answer GET_FEATURES: %s",
				kp.gens[gi].name, strerror(-rc));
	vm->b[gi].features = r.p.u64;
	missing = vm->st.features & ~r.p.u64;
	if (missing)
		return ctl_fail(err, "feature-mismatch",
				"generation '%s' lacks negotiated features 0x%llx", kp.gens[gi].name,
				(unsigned long long)missing);
	if (!(r.p.u64 & (1ull << VU_F_PROTOCOL_FEATURES)) || !vm->st.pf_set)
		return 0;
	vu_msg_init(&m, VU_GET_PROTOCOL_FEATURES, 0);
	if ((rc = kp_backend_call(vm, gi, &m, &r)) != 0)
		return ctl_fail(err, "target-failed",
				"generation '%s' did not answer GET_PROTOCOL_FEATURES: %s",
				kp.gens[gi].name, strerror(-rc));
	vm->b[gi].protocol_features = r.p.u64;
	missing = vm->st.protocol_features & ~r.p.u64;
	if (missing)
		return ctl_fail(err, "feature-mismatch",
				"generation '%s' lacks negotiated protocol features 0x%llx",
				kp.gens[gi].name, (unsigned long long)missing);
	return 0;
}

/* Pre-load generation gi for the VM: a fresh connection, checked to offer what the frontend
 * negotiated, replayed up to ring start. Nothing to do when it is pre-loaded at the session's
 * current epoch already. */
int
kp_preload(struct kp_vm *vm, int gi, struct ctl_error *err)
{
	struct sender s = { .vm = vm, .gi = gi };
	int rc;

	if (vm->b[gi].fd >= 0 && vm->b[gi].preloaded && vm->b[gi].epoch == vm->st.epoch)
		return 0;
	if ((rc = kp_bconn_connect(vm, gi)) != 0)
		return ctl_fail(err, "target-failed", "cannot connect to generation '%s' for vm '%s': %s",
				kp.gens[gi].name, vm->name, strerror(-rc));
	if (check_target(vm, gi, err) != 0) {
		kp_bconn_close(vm, gi);
		return -1;
	}
	if (kp_state_replay(&vm->st, KP_PRELOAD, NULL, send_to_gen, &s) != 0) {
		kp_bconn_close(vm, gi);
		return ctl_fail(err, "target-failed", "generation '%s' refused %s during pre-load: %s",
				kp.gens[gi].name, vu_request_name(s.request), strerror(-s.err));
	}
	vm->b[gi].preloaded = true;
	vm->b[gi].epoch = vm->st.epoch;
	return 0;
}

/* Wake both sides after a move: a kick for a backend that waits for one, a call for a guest
 * driver that sleeps on interrupts. A spurious wakeup is harmless to both. */
static void
nudge(struct kp_vm *vm)
{
	uint64_t one = 1;

	for (uint32_t i = 0; i < vm->st.nvrings; i++) {
		const struct kp_vring *vr = &vm->st.vr[i];
		if (!vr->started)
			continue;
		if (vr->kick >= 0 && write(vr->kick, &one, sizeof(one)) < 0)
			continue;
		if (vr->call >= 0 && write(vr->call, &one, sizeof(one)) < 0)
			continue;
	}
}

/* After a move to a listen-mode (OVS-DPDK) generation: ask it to announce the VM, as QEMU does
 * after a migration (SEND_RARP: DPDK puts a RARP from the VM's MAC in front of the next frames
 * it takes from the VM), so the fabric behind the generation's own uplink learns where the VM
 * is now. hitless-dp announces an arriving VM on its uplink itself. Nothing is read back: the
 * request carries no need_reply. */
static void
announce(struct kp_vm *vm, int gi)
{
	struct vu_msg m;

	if (!vm->has_mac || !kp.gens[gi].listen || vm->b[gi].fd < 0)
		return;
	vu_msg_u64(&m, VU_SEND_RARP, 0);
	memcpy(&m.p.u64, vm->mac, sizeof(vm->mac));
	if (vu_send(vm->b[gi].fd, &m) == 0)
		vm->announces++;
}

/* Start the rings on generation gi at the given positions (after KP_RINGS when it lost them).
 * The messages go out back to back and their acks are read afterwards: one wake-up of the
 * backend instead of one per message, inside the break. */
static int
start_on(struct kp_vm *vm, int gi, bool rings_too, const uint32_t *bases)
{
	struct sender s = { .vm = vm, .gi = gi, .pipelined = true };
	char what[160];

	if ((rings_too && (kp_state_replay(&vm->st, KP_RINGS, NULL, send_to_gen, &s) != 0 ||
			   collect_all(&s) != 0)) ||
	    kp_state_replay(&vm->st, KP_START, bases, send_to_gen, &s) != 0 || collect_all(&s) != 0) {
		snprintf(what, sizeof(what), "generation '%s' failed %s while starting the rings: %s",
			 kp.gens[gi].name, vu_request_name(s.request), strerror(-s.err));
		snprintf(vm->last_anomaly, sizeof(vm->last_anomaly), "%s", what);
		fprintf(stderr, "hitless-keeper: vm %s: %s\n", vm->name, what);
		return s.err;
	}
	return 0;
}

static json_t *
bases_json(const struct kp_vm *vm, const uint32_t *bases)
{
	json_t *a = json_array();

	for (uint32_t i = 0; i < vm->st.nvrings; i++)
		if (vm->st.vr[i].started)
			json_array_append_new(a, json_pack("{s:i,s:i}", "ring", i, "base", (int)bases[i]));
	return a;
}

/* Right after the old generation stopped the rings, before anyone restarts them: a drained
 * split ring has handed back every descriptor it took, so its position equals used->idx. */
static void
check_positions(const struct kp_vm *vm, const uint32_t *bases, json_t *anomalies)
{
	for (uint32_t i = 0; i < vm->st.nvrings; i++) {
		uint16_t used;
		char s[120];

		if (!vm->st.vr[i].started || kp_state_used_idx(&vm->st, i, &used) != 0 ||
		    used == (uint16_t)bases[i])
			continue;
		snprintf(s, sizeof(s), "ring %u: base %u but used->idx %u (descriptors in flight)", i,
			 bases[i], used);
		json_array_append_new(anomalies, json_string(s));
	}
}

/* Move the VM's live session from its serving generation to `to` (see the top of this file);
 * on success *result holds the control-plane window and the ring positions, also sent as
 * handoff/done. A target that fails mid-switch puts the VM back where it was. */
int
kp_handoff(struct kp_vm *vm, int to, json_t **result, struct ctl_error *err)
{
	struct kp_timing t = { .request_ns = hl_now_ns() };
	uint32_t bases[VU_MAX_VRINGS] = { 0 };
	json_t *anomalies = json_array();
	int from = vm->serving, rc;
	char why[160];

	if (vm->ffd < 0 || from < 0) {
		json_decref(anomalies);
		return ctl_fail(err, "not-connected", "vm '%s' has no live session", vm->name);
	}
	if (to == from) {
		json_decref(anomalies);
		return ctl_fail(err, "already-there", "vm '%s' is already served by '%s'", vm->name,
				kp.gens[to].name);
	}
	if (kp.gens[to].dead) {
		json_decref(anomalies);
		return ctl_fail(err, "target-dead", "generation '%s' is dead", kp.gens[to].name);
	}
	if (!kp_state_movable(&vm->st, why, sizeof(why))) {
		json_decref(anomalies);
		return ctl_fail(err, "not-movable", "vm '%s' cannot move now: %s", vm->name, why);
	}
	if (kp_preload(vm, to, err) != 0) {
		json_decref(anomalies);
		return -1;
	}

	/* the switch: from here until resumed the frontend is not read */
	t.quiesce_ns = hl_now_ns();
	/* ask for every ring's position at once; the first request stops the device */
	rc = 0;
	for (uint32_t i = 0; i < vm->st.nvrings && rc >= 0; i++) {
		struct vu_msg m;
		if (!vm->st.vr[i].started)
			continue;
		vu_msg_state(&m, VU_GET_VRING_BASE, i, 0);
		rc = kp_backend_send(vm, from, &m);
	}
	for (uint32_t i = 0; i < vm->st.nvrings; i++) {
		struct vu_msg r;
		if (!vm->st.vr[i].started)
			continue;
		if (rc < 0 || (rc = kp_backend_collect(vm, from, VU_GET_VRING_BASE, &r)) != 0) {
			/* the old generation died under us: take the position from guest memory */
			uint16_t used;
			if (kp_state_used_idx(&vm->st, i, &used) != 0) {
				json_decref(anomalies);
				kp_failover(vm, "serving generation failed during a handoff");
				return ctl_fail(err, "source-failed",
						"generation '%s' failed while stopping vm '%s'",
						kp.gens[from].name, vm->name);
			}
			bases[i] = used;
			json_array_append_new(anomalies, json_string("old generation failed at GET_VRING_BASE; position read from guest memory"));
			continue;
		}
		bases[i] = r.p.state.num;
	}
	t.bases_ns = hl_now_ns();
	check_positions(vm, bases, anomalies);
	if (kp.debug_pause_ms > 0) {
		hl_sleep_ns((uint64_t)kp.debug_pause_ms * 1000000ull);
		kp.debug_pause_ms = 0;
	}
	rc = start_on(vm, to, false, bases);
	if (rc != 0) {
		/* the target failed mid-switch: put the VM back where it was — on the connection
		 * it had, else on a fresh one, else wherever failover can take it */
		struct ctl_error perr = { "", "" };
		char why[400] = "";
		int r1, r2 = 0;

		kp_bconn_close(vm, to);
		vm->serving = from;
		if ((r1 = start_on(vm, from, true, bases)) == 0 ||
		    (kp_preload(vm, from, &perr) == 0 && (r2 = start_on(vm, from, false, bases)) == 0)) {
			vm->serving = from;
			nudge(vm);
		} else {
			/* why the old generation could not take it back, for the operator */
			snprintf(why, sizeof(why), " (restart on its connection: %s; on a fresh one: %s)",
				 strerror(-r1), perr.message[0] ? perr.message : strerror(-r2));
			kp_vm_anomaly(vm, why);
			kp_failover(vm, "target failed mid-handoff and the old generation could not restart");
		}
		json_decref(anomalies);
		return ctl_fail(err, "target-failed",
				"generation '%s' failed mid-switch (%s); vm '%s' is back on '%s'%s",
				kp.gens[to].name, strerror(-rc), vm->name,
				vm->serving >= 0 ? kp.gens[vm->serving].name : "(none)", why);
	}
	t.replayed_ns = hl_now_ns();
	nudge(vm);
	t.resumed_ns = hl_now_ns();
	announce(vm, to);

	for (uint32_t i = 0; i < vm->st.nvrings; i++)
		if (vm->st.vr[i].started)
			vm->st.vr[i].base = bases[i];
	/* The old connection stays open, stopped (no ring, memory still mapped there): closing
	 * it would make the old generation's vhost thread unmap guest memory now, in front of
	 * the next VM's stop. It goes when the old generation is retired or a rollback
	 * pre-loads that generation afresh. A listen-mode (OVS-DPDK) generation's is closed
	 * now: its port connects again a second later, a fresh device for the VM's way back.
	 * Reused instead (RESET_OWNER), DPDK 22.11's device reset clears the flag that keeps
	 * per-ring statistics, and OVS then reports no counters for the port at all. */
	vm->b[from].preloaded = false;
	if (kp.gens[from].listen)
		kp_bconn_close(vm, from);
	vm->serving = to;
	vm->home = to;
	vm->handoffs++;
	*result = json_pack("{s:s,s:s,s:s,s:o,s:o,s:o}", "vm", vm->name, "from", kp.gens[from].name,
			    "to", kp.gens[to].name, "timing", timing_json(&t), "rings",
			    bases_json(vm, bases), "anomalies", anomalies);
	ctl_emit(kp.ctl, "handoff/done", json_incref(*result));
	return 0;
}

/* Where a session of generation from goes when from dies: the designated standby, else any
 * other live generation (while VMs are split across two, each is the other's way out). */
int
kp_failover_target(int from)
{
	if (kp.standby >= 0 && kp.standby != from && kp.gens[kp.standby].in_use &&
	    !kp.gens[kp.standby].dead)
		return kp.standby;
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		if (gi != from && kp.gens[gi].in_use && !kp.gens[gi].dead)
			return gi;
	return -1;
}

/* The VM's serving generation is dead or failed: move the session to the standby (or the
 * other live generation) with ring positions read from guest memory (failover/done), or report
 * it down (failover/failed). */
int
kp_failover(struct kp_vm *vm, const char *cause)
{
	struct kp_timing t = { .request_ns = hl_now_ns() };
	uint32_t bases[VU_MAX_VRINGS] = { 0 };
	struct ctl_error err = { "", "" };
	int from = vm->serving, to = kp_failover_target(vm->serving);
	json_t *ev;

	/* a crash found through a request or a handoff: fence its peers before anything moves
	 * (a generation merely failing a request is not fenced: its process is not exiting) */
	if (from >= 0)
		kp_gen_connection_lost(from);
	/* that was the death of a generation without a heartbeat: its sessions, this one among
	 * them, were failed over there */
	if (from >= 0 && kp.gens[from].dead && vm->serving != from)
		return vm->serving >= 0 ? 0 : -1;
	if (from >= 0)
		kp_bconn_close(vm, from);
	vm->serving = -1;
	if (to < 0) {
		ctl_fail(&err, "no-standby", "no other live generation to take the session");
		goto down;
	}
	if (kp_state_packed(&vm->st)) {
		ctl_fail(&err, "packed-ring", "packed rings keep their position only in the dead "
			 "backend: the session cannot fail over");
		goto down;
	}
	if (kp_preload(vm, to, &err) != 0)
		goto down;
	t.quiesce_ns = hl_now_ns();
	for (uint32_t i = 0; i < vm->st.nvrings; i++) {
		uint16_t used;
		if (!vm->st.vr[i].started)
			continue;
		if (kp_state_used_idx(&vm->st, i, &used) != 0) {
			ctl_fail(&err, "no-position", "ring %u: used ring not in guest memory", i);
			goto down;
		}
		bases[i] = used;
	}
	t.bases_ns = hl_now_ns();
	if (start_on(vm, to, false, bases) != 0) {
		kp_bconn_close(vm, to);
		ctl_fail(&err, "target-failed", "standby '%s' failed to start the rings",
			 kp.gens[to].name);
		goto down;
	}
	t.replayed_ns = hl_now_ns();
	nudge(vm);
	t.resumed_ns = hl_now_ns();
	announce(vm, to);
	vm->serving = to;
	vm->home = to;
	vm->failovers++;
	ev = json_pack("{s:s,s:s?,s:s,s:s,s:o,s:o}", "vm", vm->name, "from",
		       from >= 0 ? kp.gens[from].name : NULL, "to", kp.gens[to].name, "cause", cause,
		       "timing", timing_json(&t), "rings", bases_json(vm, bases));
	ctl_emit(kp.ctl, "failover/done", ev);
	return 0;
down:
	snprintf(vm->last_anomaly, sizeof(vm->last_anomaly), "failover failed: %s", err.message);
	fprintf(stderr, "hitless-keeper: vm %s: failover failed: %s\n", vm->name, err.message);
	ctl_emit(kp.ctl, "failover/failed",
		 json_pack("{s:s,s:s,s:s,s:s}", "vm", vm->name, "cause", cause, "code", err.code,
			   "message", err.message));
	/* nobody serves the VM: never a silent blackhole behind a link that looks up. Closing the
	 * frontend's connection takes its link down (the guest, a bond in it, see it); it may
	 * connect again, and is served once a generation is there. */
	if (vm->ffd >= 0)
		kp_frontend_close(vm, "no generation serves the VM (failover failed)");
	return -1;
}
