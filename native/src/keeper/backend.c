/* SPDX-License-Identifier: Apache-2.0
 * The keeper's side of a VM's connections to generations (struct kp_bconn, one per VM and
 * generation): connecting to the generation's vhost socket (<gen run dir>/vhost/<vm>.sock),
 * or, for a generation whose ports are vhost clients (OVS-DPDK), listening there and accepting
 * the port's connection; closing, and sending requests with their replies read and checked.
 *
 * Also here, because every file above uses them: connecting a Unix stream socket (a
 * generation's, or a client-mode frontend's) and reporting an anomaly of a VM's session.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keeper.h"

/* Something went wrong on a VM's session that the operator should see: kept as the VM's
 * last anomaly, logged, and sent to subscribed clients as session/anomaly. */
void
kp_vm_anomaly(struct kp_vm *vm, const char *what)
{
	snprintf(vm->last_anomaly, sizeof(vm->last_anomaly), "%s", what);
	fprintf(stderr, "hitless-keeper: vm %s: %s\n", vm->name, what);
	ctl_emit(kp.ctl, "session/anomaly", json_pack("{s:s,s:s,s:I}", "vm", vm->name, "what", what,
						       "t_ns", (json_int_t)hl_now_ns()));
}

/* Connect to a Unix stream socket; blocking, so a request and its reply are one exchange.
 * The fd, or -errno (-ENAMETOOLONG for a path sun_path cannot hold). */
int
kp_unix_connect(const char *path)
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

/* Close the VM's connection to generation gi (if any) and forget what it was pre-loaded
 * with; the VM is no longer served when that was its serving generation. */
void
kp_bconn_close(struct kp_vm *vm, int gi)
{
	struct kp_bconn *b = &vm->b[gi];

	if (b->fd >= 0) {
		kp_ev_del(b->fd);
		close(b->fd);
	}
	memset(b, 0, sizeof(*b));
	b->fd = -1;
	if (vm->serving == gi)
		vm->serving = -1;
}

static int
backend_path(const struct kp_vm *vm, int gi, char *path, size_t len)
{
	int n = snprintf(path, len, "%s/vhost/%s.sock", kp.gens[gi].run_dir, vm->name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int
kp_blisten_open(struct kp_vm *vm, int gi)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, e;

	if (vm->blfd[gi] >= 0)
		return 0;
	if (backend_path(vm, gi, sa.sun_path, sizeof(sa.sun_path)) != 0)
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0) {
		e = errno;
		close(fd);
		return -e;
	}
	chmod(sa.sun_path, 0660);
	vm->blfd[gi] = fd;
	return 0;
}

void
kp_blisten_close(struct kp_vm *vm, int gi)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

	if (vm->blfd[gi] < 0)
		return;
	close(vm->blfd[gi]);
	vm->blfd[gi] = -1;
	if (backend_path(vm, gi, path, sizeof(path)) == 0)
		unlink(path);
}

/* The next connection a listen-mode generation's port made to the VM's socket, waiting for
 * it up to KP_ACCEPT_WAIT_MS (a vhost client connects at once, and again a second after the
 * keeper closed its last connection). A connection its port already closed again (the port
 * was deleted, the process restarted) is skipped. The fd, or -errno. */
static int
accept_backend(struct kp_vm *vm, int gi)
{
	uint64_t deadline = hl_now_ns() + KP_ACCEPT_WAIT_MS * 1000000ull;
	struct pollfd p;
	int fd;

	if (vm->blfd[gi] < 0)
		return -ENOTCONN;
	for (;;) {
		uint64_t now = hl_now_ns();

		if (now >= deadline)
			return -ETIMEDOUT;
		p = (struct pollfd){ .fd = vm->blfd[gi], .events = POLLIN };
		if (poll(&p, 1, (int)((deadline - now) / 1000000) + 1) <= 0)
			continue;
		fd = accept4(vm->blfd[gi], NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		p = (struct pollfd){ .fd = fd, .events = POLLRDHUP };
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
			close(fd);
			continue;
		}
		return fd;
	}
}

/* A fresh connection to generation gi for the VM (an old one is closed first): to its socket,
 * or for a listen-mode generation the one its port made to the keeper's. Watched by the relay
 * so the generation's death is seen. 0 or -errno. */
int
kp_bconn_connect(struct kp_vm *vm, int gi)
{
	char path[sizeof(vm->sock) + 96];
	struct pollfd p;
	int fd;

	/* a listen-mode generation's port connects again only a second after its connection is
	 * closed (DPDK's vhost client reconnect): a connection it still has is used again, the
	 * session replayed on it as a frontend re-starting its device does */
	if (kp.gens[gi].listen && (fd = vm->b[gi].fd) >= 0) {
		struct vu_msg m;

		p = (struct pollfd){ .fd = fd, .events = POLLRDHUP };
		/* RESET_OWNER: the backend drops the device's state (DPDK: as on a new connection) */
		vu_msg_init(&m, VU_RESET_OWNER, 0);
		if (poll(&p, 1, 0) == 0 && vu_send(fd, &m) == 0) {
			memset(&vm->b[gi], 0, sizeof(vm->b[gi]));
			vm->b[gi].fd = fd;
			if (vm->serving == gi)
				vm->serving = -1;
			return 0;
		}
	}
	kp_bconn_close(vm, gi);
	if (kp.gens[gi].listen) {
		fd = accept_backend(vm, gi);
	} else {
		if (backend_path(vm, gi, path, sizeof(path)) != 0)
			return -ENAMETOOLONG;
		fd = kp_unix_connect(path);
	}
	if (fd < 0)
		return fd;
	vm->b[gi].fd = fd;
	kp_ev_add(fd, KP_EV_BACKEND, kp_vm_index(vm), gi);
	return 0;
}

/* Send one request (with its fds) to the VM's connection to generation gi; whether a reply
 * follows depends on the request and the negotiated REPLY_ACK. */
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

/* Read the reply to `request` and check it: a malformed one is the session's anomaly
 * (-EPROTO); an ack that reports failure is -EIO. */
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
		kp_vm_anomaly(vm, err);
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
