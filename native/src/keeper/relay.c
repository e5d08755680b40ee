/* SPDX-License-Identifier: Apache-2.0
 * The relay: one epoll loop over every VM's listening socket, frontend connection and backend
 * connections, plus a timer for heartbeat watching and client-mode reconnects.
 *
 * A frontend request is checked, recorded in the session state, forwarded to the serving
 * generation with its fds, and — when it expects one — the backend's reply is checked, recorded
 * and returned to the frontend (GET_PROTOCOL_FEATURES with the features the relay cannot carry
 * masked out). A malformed frame is refused by closing that one frontend connection; nothing
 * else is affected.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "keeper.h"

enum ev_kind { EV_LISTEN = 1, EV_FRONTEND, EV_BACKEND, EV_TIMER };

static uint64_t
ev_tag(enum ev_kind k, int vm, int gen)
{
	return (uint64_t)k << 32 | (uint64_t)vm << 8 | (uint64_t)gen;
}

static int
vm_index(const struct kp_vm *vm)
{
	return (int)(vm - kp.vms);
}

static void
ep_add(int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = tag };

	epoll_ctl(kp.epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void
ep_del(int fd)
{
	epoll_ctl(kp.epfd, EPOLL_CTL_DEL, fd, NULL);
}

static void
anomaly(struct kp_vm *vm, const char *what)
{
	snprintf(vm->last_anomaly, sizeof(vm->last_anomaly), "%s", what);
	fprintf(stderr, "hitless-keeper: vm %s: %s\n", vm->name, what);
	ctl_emit(kp.ctl, "session/anomaly", json_pack("{s:s,s:s,s:I}", "vm", vm->name, "what", what,
						       "t_ns", (json_int_t)hl_now_ns()));
}

struct kp_vm *
kp_vm_find(const char *name)
{
	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use && strcmp(kp.vms[v].name, name) == 0)
			return &kp.vms[v];
	return NULL;
}

static int
unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

void
kp_bconn_close(struct kp_vm *vm, int gi)
{
	struct kp_bconn *b = &vm->b[gi];

	if (b->fd >= 0) {
		ep_del(b->fd);
		close(b->fd);
	}
	memset(b, 0, sizeof(*b));
	b->fd = -1;
	if (vm->serving == gi)
		vm->serving = -1;
}

int
kp_bconn_connect(struct kp_vm *vm, int gi)
{
	char path[sizeof(vm->sock) + 96];
	int fd;

	kp_bconn_close(vm, gi);
	snprintf(path, sizeof(path), "%s/vhost/%s.sock", kp.gens[gi].run_dir, vm->name);
	fd = unix_connect(path);
	if (fd < 0)
		return fd;
	vm->b[gi].fd = fd;
	ep_add(fd, ev_tag(EV_BACKEND, vm_index(vm), gi));
	return 0;
}

int
kp_backend_send(struct kp_vm *vm, int gi, struct vu_msg *req)
{
	struct kp_bconn *b = &vm->b[gi];
	int rc;

	if (b->fd < 0)
		return -ENOTCONN;
	if ((rc = vu_send(b->fd, req)) != 0)
		return rc;
	return vu_expects_reply(req, vm->st.pf_set ? vm->st.protocol_features : 0) ||
	       req->request == VU_GET_PROTOCOL_FEATURES || req->request == VU_GET_FEATURES;
}

int
kp_backend_collect(struct kp_vm *vm, int gi, uint32_t request, struct vu_msg *reply)
{
	struct vu_msg r;
	char err[160];
	int rc;

	if (vm->b[gi].fd < 0)
		return -ENOTCONN;
	if ((rc = vu_recv(vm->b[gi].fd, &r, KP_REPLY_TIMEOUT_MS)) != 0)
		return rc;
	if (vu_check_reply(&r, request, err, sizeof(err)) != 0) {
		vu_close_fds(&r);
		anomaly(vm, err);
		return -EPROTO;
	}
	/* a need_reply ack carries 0 for success */
	if (!(request == VU_GET_FEATURES || request == VU_GET_PROTOCOL_FEATURES ||
	      request == VU_GET_VRING_BASE || request == VU_GET_QUEUE_NUM ||
	      request == VU_GET_STATUS || request == VU_SET_LOG_BASE) &&
	    r.p.u64 != 0)
		return -EIO;
	if (reply != NULL)
		*reply = r;
	return 0;
}

int
kp_backend_call(struct kp_vm *vm, int gi, struct vu_msg *req, struct vu_msg *reply)
{
	int rc = kp_backend_send(vm, gi, req);

	if (rc <= 0)
		return rc;
	return kp_backend_collect(vm, gi, req->request, reply);
}

void
kp_frontend_close(struct kp_vm *vm, const char *why)
{
	if (vm->ffd < 0)
		return;
	ep_del(vm->ffd);
	close(vm->ffd);
	vm->ffd = -1;
	vm->disconnects++;
	/* the generations see the disconnect too, and the session's fds (guest memory) go */
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		kp_bconn_close(vm, gi);
	kp_state_clear(&vm->st);
	vm->next_connect_ns = hl_now_ns() + 200000000ull;
	ctl_emit(kp.ctl, "session/disconnected",
		 json_pack("{s:s,s:s,s:I}", "vm", vm->name, "why", why, "t_ns",
			   (json_int_t)hl_now_ns()));
}

/* A frontend arrived (accepted or connected): attach it to the VM's home generation. */
static void
frontend_attach(struct kp_vm *vm, int fd)
{
	int gi = vm->home;

	if (gi < 0 || !kp.gens[gi].in_use || kp.gens[gi].dead)
		gi = kp.standby >= 0 && !kp.gens[kp.standby].dead ? kp.standby : -1;
	if (gi < 0 || kp_bconn_connect(vm, gi) != 0) {
		anomaly(vm, "frontend refused: no live generation to serve it");
		close(fd);
		return;
	}
	vm->ffd = fd;
	vm->serving = gi;
	vm->connects++;
	kp_state_clear(&vm->st);
	ep_add(fd, ev_tag(EV_FRONTEND, vm_index(vm), 0));
	ctl_emit(kp.ctl, "session/connected",
		 json_pack("{s:s,s:s,s:I}", "vm", vm->name, "gen", kp.gens[gi].name, "t_ns",
			   (json_int_t)hl_now_ns()));
}

static void
on_listen(struct kp_vm *vm)
{
	int fd = accept4(vm->lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (vm->ffd >= 0) { /* one frontend per VM */
		anomaly(vm, "second frontend connection refused");
		close(fd);
		return;
	}
	frontend_attach(vm, fd);
}

/* Drop pre-loaded standbys that no longer match the session (the guest renegotiated): they
 * would start on stale rings or memory. They are pre-loaded again when needed. */
static void
drop_stale_standbys(struct kp_vm *vm)
{
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		if (gi != vm->serving && vm->b[gi].fd >= 0 && vm->b[gi].epoch != vm->st.epoch)
			kp_bconn_close(vm, gi);
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
	reply.flags = VU_VERSION | VU_FLAG_REPLY;
	reply.nfds = 0;
	return vu_send(vm->ffd, &reply);
}

static void
on_frontend(struct kp_vm *vm)
{
	struct vu_msg m;
	char err[200];
	int rc = vu_recv(vm->ffd, &m, 0);

	if (rc == -ETIMEDOUT)
		return;
	if (rc != 0) {
		if (rc == -EPROTO) {
			vm->refused++;
			anomaly(vm, "malformed frame from the frontend (oversized or too many fds)");
		}
		kp_frontend_close(vm, rc == -EPIPE ? "frontend closed the connection"
						   : "frontend connection failed");
		return;
	}
	if (vu_check_request(&m, err, sizeof(err)) != 0 ||
	    kp_state_apply(&vm->st, &m, true, err, sizeof(err)) != 0) {
		vm->refused++;
		vu_close_fds(&m);
		anomaly(vm, err);
		kp_frontend_close(vm, "protocol violation");
		return;
	}
	drop_stale_standbys(vm);
	rc = relay_request(vm, &m);
	vu_close_fds(&m);
	if (rc != 0) {
		snprintf(err, sizeof(err), "%s not relayed: %s", vu_request_name(m.request),
			 strerror(-rc));
		anomaly(vm, err);
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
		anomaly(vm, "unsolicited message from a generation ignored");
		return;
	}
	if (gi == vm->serving) {
		kp_failover(vm, "serving generation closed the connection");
	} else {
		kp_bconn_close(vm, gi);
	}
}

static void
client_connect(struct kp_vm *vm, uint64_t now)
{
	int fd;

	if (!vm->client || vm->ffd >= 0 || now < vm->next_connect_ns)
		return;
	fd = unix_connect(vm->sock);
	if (fd < 0) {
		vm->next_connect_ns = now + 200000000ull;
		return;
	}
	frontend_attach(vm, fd);
}

static void
on_timer(void)
{
	uint64_t exp, now = hl_now_ns();

	if (read(kp.timerfd, &exp, sizeof(exp)) < 0)
		return;
	kp_gen_watch(now);
	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use)
			client_connect(&kp.vms[v], now);
}

int
kp_relay_init(void)
{
	struct itimerspec its = { 0 };

	kp.epfd = epoll_create1(EPOLL_CLOEXEC);
	kp.timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (kp.epfd < 0 || kp.timerfd < 0)
		return -errno;
	its.it_interval.tv_nsec = (long)kp.watch_us * 1000;
	its.it_value.tv_nsec = (long)kp.watch_us * 1000;
	if (timerfd_settime(kp.timerfd, 0, &its, NULL) != 0)
		return -errno;
	ep_add(kp.timerfd, ev_tag(EV_TIMER, 0, 0));
	return 0;
}

void
kp_relay_run(void)
{
	struct epoll_event evs[32];

	hl_tight_timer_slack();
	while (!kp.quit) {
		int n = epoll_wait(kp.epfd, evs, 32, 100);

		pthread_mutex_lock(&kp.lock);
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;
			enum ev_kind k = (enum ev_kind)(tag >> 32);
			struct kp_vm *vm = &kp.vms[(tag >> 8) & 0xff];
			int gi = (int)(tag & 0xff);

			if (k == EV_TIMER) {
				on_timer();
				continue;
			}
			if (!vm->in_use)
				continue;
			if (k == EV_LISTEN)
				on_listen(vm);
			else if (k == EV_FRONTEND && vm->ffd >= 0)
				on_frontend(vm);
			else if (k == EV_BACKEND && vm->b[gi].fd >= 0)
				on_backend(vm, gi);
		}
		pthread_mutex_unlock(&kp.lock);
	}
}

int
kp_vm_add(const char *name, const char *sock, bool client, int gen, struct ctl_error *err)
{
	struct kp_vm *vm = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int rc;

	if (!hl_valid_name(name))
		return ctl_fail(err, "invalid-args", "vm: '%.40s' is not a valid name", name);
	if (kp_vm_find(name) != NULL)
		return ctl_fail(err, "exists", "vm '%s' already exists", name);
	for (int v = 0; v < KP_MAX_VMS && vm == NULL; v++)
		if (!kp.vms[v].in_use)
			vm = &kp.vms[v];
	if (vm == NULL)
		return ctl_fail(err, "full", "at most %d VMs", KP_MAX_VMS);
	memset(vm, 0, sizeof(*vm));
	if (sock != NULL)
		rc = snprintf(vm->sock, sizeof(vm->sock), "%s", sock);
	else
		rc = snprintf(vm->sock, sizeof(vm->sock), "%s/vhost/%s.sock", kp.run_dir, name);
	if (rc < 0 || (size_t)rc >= sizeof(vm->sock))
		return ctl_fail(err, "invalid-args", "socket: path longer than %zu bytes",
				sizeof(vm->sock) - 1);
	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use && strcmp(kp.vms[v].sock, vm->sock) == 0)
			return ctl_fail(err, "exists", "socket '%s' is used by vm '%s'", vm->sock,
					kp.vms[v].name);
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	vm->client = client;
	vm->home = gen;
	vm->serving = -1;
	vm->ffd = vm->lfd = -1;
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		vm->b[gi].fd = -1;
	kp_state_init(&vm->st);
	if (!client) {
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", vm->sock);
		vm->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		unlink(vm->sock);
		if (vm->lfd < 0 || bind(vm->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
		    listen(vm->lfd, 4) != 0) {
			rc = errno;
			if (vm->lfd >= 0)
				close(vm->lfd);
			return ctl_fail(err, "socket", "cannot listen on %s: %s", vm->sock,
					strerror(rc));
		}
		chmod(vm->sock, 0660);
		ep_add(vm->lfd, ev_tag(EV_LISTEN, vm_index(vm), 0));
	}
	vm->in_use = true;
	return 0;
}

int
kp_vm_del(const char *name, struct ctl_error *err)
{
	struct kp_vm *vm = kp_vm_find(name);

	if (vm == NULL)
		return ctl_fail(err, "unknown-vm", "no vm '%.40s'", name);
	kp_frontend_close(vm, "vm removed");
	if (vm->lfd >= 0) {
		ep_del(vm->lfd);
		close(vm->lfd);
		unlink(vm->sock);
	}
	kp_state_clear(&vm->st);
	vm->in_use = false;
	return 0;
}
