/* SPDX-License-Identifier: Apache-2.0
 * The keeper's side of a VM's connections to generations (struct kp_bconn, one per VM and
 * generation): connecting to the generation's vhost socket (<gen run dir>/vhost/<vm>.sock),
 * closing, and sending requests with their replies read and checked.
 *
 * Also here, because every file above uses them: connecting a Unix stream socket (a
 * generation's, or a client-mode frontend's) and reporting an anomaly of a VM's session.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
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

/* A fresh connection to generation gi's socket for the VM (an old one is closed first),
 * watched by the relay so the generation's death is seen. 0 or -errno. */
int
kp_bconn_connect(struct kp_vm *vm, int gi)
{
	char path[sizeof(vm->sock) + 96];
	int fd;

	kp_bconn_close(vm, gi);
	snprintf(path, sizeof(path), "%s/vhost/%s.sock", kp.gens[gi].run_dir, vm->name);
	fd = kp_unix_connect(path);
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
