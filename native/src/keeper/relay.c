/* SPDX-License-Identifier: Apache-2.0
 * The relay: one loop (kp_relay_run) over the events of every socket the keeper holds
 * (evloop.c), dispatching each under kp.lock to its handler here.
 *
 * A frontend request is checked, recorded in the session state, forwarded to the serving
 * generation with its fds, and — when it expects one — the backend's reply is checked, recorded
 * and returned to the frontend (GET_PROTOCOL_FEATURES with the features the relay cannot carry
 * masked out). A malformed frame is refused by closing that one frontend connection; nothing
 * else is affected. A generation that fails under a request, or closes its connection, is
 * failed over from (handoff.c); a generation whose packet loop exited wakes it (gen.c), and
 * the timer, when one is needed, watches heartbeats and reconnects client-mode frontends.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keeper.h"

/* A frontend connects to a server-mode VM's socket; one per VM, a second is refused. */
static void
on_listen(struct kp_vm *vm)
{
	int fd = accept4(vm->lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (vm->ffd >= 0) { /* one frontend per VM */
		kp_vm_anomaly(vm, "second frontend connection refused");
		close(fd);
		return;
	}
	kp_frontend_attach(vm, fd);
}

/* A quiet time after the frontend's last request before a standby is pre-loaded again: a
 * guest brings its rings up one request at a time, and each one makes a pre-load stale. */
#define KP_REPRELOAD_QUIET_NS (50 * 1000000ull)

/* Drop pre-loaded standbys that no longer match the session (the guest renegotiated): they
 * would start on stale rings or memory. A standby the operator pre-loaded is pre-loaded again
 * once the session settles (repreload), so the next switch stays short. */
static void
drop_stale_standbys(struct kp_vm *vm)
{
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		if (gi != vm->serving && vm->b[gi].fd >= 0 && vm->b[gi].epoch != vm->st.epoch) {
			if (vm->b[gi].preloaded)
				vm->want_preload |= 1u << gi;
			kp_bconn_close(vm, gi);
		}
}

/* Pre-load again what drop_stale_standbys dropped, once the guest is done renegotiating: the
 * session is movable and the frontend has been quiet for a moment. */
static void
repreload(struct kp_vm *vm, uint64_t now)
{
	char why[160];

	if (vm->want_preload == 0 || vm->ffd < 0 || vm->serving < 0 ||
	    now - vm->last_frontend_ns < KP_REPRELOAD_QUIET_NS ||
	    !kp_state_movable(&vm->st, why, sizeof(why)))
		return;
	for (int gi = 0; gi < KP_MAX_GENS; gi++) {
		struct ctl_error err = { 0 };

		if (!(vm->want_preload & (1u << gi)))
			continue;
		vm->want_preload &= ~(1u << gi);
		if (gi == vm->serving || !kp.gens[gi].in_use)
			continue;
		if (kp_preload(vm, gi, &err) != 0) {
			char msg[300];

			snprintf(msg, sizeof(msg), "pre-loading '%s' again after the guest renegotiated "
				 "failed: %.200s", kp.gens[gi].name, err.message);
			kp_vm_anomaly(vm, msg);
		}
	}
}

/* Relay one request to the serving generation and its reply back. The backend dying under it
 * triggers a failover, after which the request is answered by the new generation. */
static int
relay_request(struct kp_vm *vm, struct vu_msg *m)
{
	struct vu_msg reply;
	bool want = vu_expects_reply(m, vm->st.pf_set ? vm->st.protocol_features : 0) ||
		    m->request == VU_GET_FEATURES || m->request == VU_GET_PROTOCOL_FEATURES;
	int rc = -ENOTCONN;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (vm->serving < 0)
			break;
		rc = kp_backend_call(vm, vm->serving, m, want ? &reply : NULL);
		if (rc == 0 || rc == -EIO)
			break;
		/* the serving generation is gone: move the session (state already has m) */
		if (kp_failover(vm, "backend connection failed during a request") != 0)
			break;
		if (m->request != VU_GET_FEATURES && m->request != VU_GET_PROTOCOL_FEATURES &&
		    m->request != VU_GET_QUEUE_NUM && m->request != VU_GET_STATUS &&
		    m->request != VU_GET_VRING_BASE) {
			/* the replay carried it; acknowledge success if an ack was asked for */
			vu_msg_u64(&reply, m->request, 0);
			reply.flags |= VU_FLAG_REPLY;
			rc = 0;
			break;
		}
	}
	if (rc != 0 && rc != -EIO)
		return rc;
	if (!want)
		return 0;
	if (rc == -EIO) { /* the backend refused: pass its failure on */
		vu_msg_u64(&reply, m->request, 1);
		reply.flags = VU_VERSION | VU_FLAG_REPLY;
	}
	kp_state_reply(&vm->st, m, &reply);
	if (m->request == VU_GET_PROTOCOL_FEATURES)
		reply.p.u64 &= VU_PF_RELAYABLE;
	/* no more queue pairs than the keeper tracks rings for (and a generation polls): a guest
	 * never sets up a ring that nobody hands off */
	if (m->request == VU_GET_QUEUE_NUM && rc == 0 && reply.p.u64 > VU_MAX_VRINGS / 2)
		reply.p.u64 = VU_MAX_VRINGS / 2;
	reply.flags = VU_VERSION | VU_FLAG_REPLY;
	reply.nfds = 0;
	return vu_send(vm->ffd, &reply);
}

/* One request from the frontend: a broken connection or frame closes the frontend; a request
 * the session state refuses is a protocol violation (closed too); anything else is relayed. */
static void
on_frontend(struct kp_vm *vm)
{
	struct vu_msg m;
	char err[200];
	int rc = vu_recv(vm->ffd, &m, 0);

	if (rc == -ETIMEDOUT)
		return;
	vm->last_frontend_ns = hl_now_ns();
	if (rc != 0) {
		if (rc == -EPROTO) {
			vm->refused++;
			kp_vm_anomaly(vm, "malformed frame from the frontend (oversized or too many fds)");
		}
		kp_frontend_close(vm, rc == -EPIPE ? "frontend closed the connection"
						   : "frontend connection failed");
		return;
	}
	if (vu_check_request(&m, err, sizeof(err)) != 0 ||
	    kp_state_apply(&vm->st, &m, true, err, sizeof(err)) != 0) {
		vm->refused++;
		vu_close_fds(&m);
		kp_vm_anomaly(vm, err);
		kp_frontend_close(vm, "protocol violation");
		return;
	}
	drop_stale_standbys(vm);
	rc = relay_request(vm, &m);
	vu_close_fds(&m);
	if (rc != 0) {
		snprintf(err, sizeof(err), "%s not relayed: %s", vu_request_name(m.request),
			 strerror(-rc));
		kp_vm_anomaly(vm, err);
		kp_frontend_close(vm, "no generation could answer");
	}
}

/* Something arrived from a backend outside a request: its death, or an unsolicited message. */
static void
on_backend(struct kp_vm *vm, int gi)
{
	struct vu_msg m;
	int rc = vu_recv(vm->b[gi].fd, &m, 0);

	if (rc == -ETIMEDOUT)
		return;
	if (rc == 0) {
		vu_close_fds(&m);
		kp_vm_anomaly(vm, "unsolicited message from a generation ignored");
		return;
	}
	if (gi == vm->serving) {
		kp_gen_connection_lost(gi);
		/* (unless that was its generation's death, which failed every session over) */
		if (vm->serving == gi)
			kp_failover(vm, "serving generation closed the connection");
	} else {
		kp_bconn_close(vm, gi);
	}
}

/* A client-mode VM without a frontend: try its socket again once the retry time has come. */
static void
client_connect(struct kp_vm *vm, uint64_t now)
{
	int fd;

	if (!vm->client || vm->ffd >= 0 || now < vm->next_connect_ns)
		return;
	/* no generation could serve it: a connection made only to be closed again would look to
	 * the frontend like a backend that came and went (some frontends then wedge) */
	if (kp_frontend_gen(vm) < 0) {
		vm->next_connect_ns = now + KP_RECONNECT_US * 1000ull;
		return;
	}
	fd = kp_unix_connect(vm->sock);
	if (fd < 0) {
		vm->next_connect_ns = now + KP_RECONNECT_US * 1000ull;
		return;
	}
	kp_frontend_attach(vm, fd);
}

/* Every timer period: dead generations (gen.c), then reconnects. */
static void
on_timer(void)
{
	uint64_t now = hl_now_ns();

	kp_gen_watch(now);
	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use)
			client_connect(&kp.vms[v], now);
}

/* The relay thread's loop, until kp.quit: wait for events, then handle them all under kp.lock,
 * so none interleaves with a control command. The wait is bounded so that quit is seen: 100 ms
 * while something is watched (the watch timer wakes it anyway) or the fd store is kept, 500 ms
 * on a keeper with nothing to watch, which then wakes twice a second (bench/run idle). */
void
kp_relay_run(void)
{
	struct kp_event evs[32];
	int wait_ms = 100;

	hl_tight_timer_slack();
	while (!kp.quit) {
		int n = kp_ev_wait(evs, 32, wait_ms);

		pthread_mutex_lock(&kp.lock);
		if (kp.handed_over) { /* another keeper serves these sockets now: touch none */
			pthread_mutex_unlock(&kp.lock);
			return;
		}
		bool changed = false;

		for (int i = 0; i < n; i++) {
			struct kp_vm *vm = &kp.vms[evs[i].vm];
			int gi = evs[i].gen;

			if (evs[i].kind == KP_EV_TIMER) {
				on_timer();
				continue;
			}
			if (evs[i].kind == KP_EV_WAKE) { /* a generation's packet loop exited (gen.c) */
				kp_gen_watch(hl_now_ns());
				continue;
			}
			changed = true;
			if (!vm->in_use)
				continue;
			if (evs[i].kind == KP_EV_LISTEN)
				on_listen(vm);
			else if (evs[i].kind == KP_EV_FRONTEND && vm->ffd >= 0)
				on_frontend(vm);
			else if (evs[i].kind == KP_EV_BACKEND && vm->b[gi].fd >= 0)
				on_backend(vm, gi);
		}
		for (int v = 0; v < KP_MAX_VMS; v++)
			if (kp.vms[v].in_use && kp.vms[v].want_preload)
				repreload(&kp.vms[v], hl_now_ns());
		uint32_t period = kp_timer_needed();

		kp_ev_timer(period);
		kp_gen_share_update();
		wait_ms = period != 0 || kp_fdstore_enabled() ? 100 : 500;
		/* systemd's fd store (--fdstore): after a change, and now and then */
		kp_fdstore_sync(changed);
		pthread_mutex_unlock(&kp.lock);
	}
}
