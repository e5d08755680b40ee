/* SPDX-License-Identifier: Apache-2.0
 * vhost-user frames: request table, checks and I/O (see vu.h). One line per request in the
 * table, as lib/vhost does it: what its payload is, how many fds ride with it, whether the
 * backend always answers.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vu.h"

enum payload { P_NONE, P_U64, P_STATE, P_ADDR, P_MEM, P_LOG };
enum fds { F_NONE, F_ONE, F_RING /* one unless the NOFD bit is set */, F_REGIONS };

struct req_info {
	const char *name;
	enum payload payload;
	enum fds fds;
	bool always_reply;
	enum payload reply;
};

static const struct req_info reqs[VU_REQUEST_MAX] = {
	[VU_GET_FEATURES]          = { "GET_FEATURES", P_NONE, F_NONE, true, P_U64 },
	[VU_SET_FEATURES]          = { "SET_FEATURES", P_U64, F_NONE, false, P_U64 },
	[VU_SET_OWNER]             = { "SET_OWNER", P_NONE, F_NONE, false, P_U64 },
	[VU_RESET_OWNER]           = { "RESET_OWNER", P_NONE, F_NONE, false, P_U64 },
	[VU_SET_MEM_TABLE]         = { "SET_MEM_TABLE", P_MEM, F_REGIONS, false, P_U64 },
	[VU_SET_LOG_BASE]          = { "SET_LOG_BASE", P_LOG, F_ONE, true, P_NONE },
	[VU_SET_LOG_FD]            = { "SET_LOG_FD", P_NONE, F_ONE, false, P_U64 },
	[VU_SET_VRING_NUM]         = { "SET_VRING_NUM", P_STATE, F_NONE, false, P_U64 },
	[VU_SET_VRING_ADDR]        = { "SET_VRING_ADDR", P_ADDR, F_NONE, false, P_U64 },
	[VU_SET_VRING_BASE]        = { "SET_VRING_BASE", P_STATE, F_NONE, false, P_U64 },
	[VU_GET_VRING_BASE]        = { "GET_VRING_BASE", P_STATE, F_NONE, true, P_STATE },
	[VU_SET_VRING_KICK]        = { "SET_VRING_KICK", P_U64, F_RING, false, P_U64 },
	[VU_SET_VRING_CALL]        = { "SET_VRING_CALL", P_U64, F_RING, false, P_U64 },
	[VU_SET_VRING_ERR]         = { "SET_VRING_ERR", P_U64, F_RING, false, P_U64 },
	[VU_GET_PROTOCOL_FEATURES] = { "GET_PROTOCOL_FEATURES", P_NONE, F_NONE, true, P_U64 },
	[VU_SET_PROTOCOL_FEATURES] = { "SET_PROTOCOL_FEATURES", P_U64, F_NONE, false, P_U64 },
	[VU_GET_QUEUE_NUM]         = { "GET_QUEUE_NUM", P_NONE, F_NONE, true, P_U64 },
	[VU_SET_VRING_ENABLE]      = { "SET_VRING_ENABLE", P_STATE, F_NONE, false, P_U64 },
	[VU_SEND_RARP]             = { "SEND_RARP", P_U64, F_NONE, false, P_U64 },
	[VU_NET_SET_MTU]           = { "NET_SET_MTU", P_U64, F_NONE, false, P_U64 },
	[VU_SET_VRING_ENDIAN]      = { "SET_VRING_ENDIAN", P_STATE, F_NONE, false, P_U64 },
	[VU_SET_STATUS]            = { "SET_STATUS", P_U64, F_NONE, false, P_U64 },
	[VU_GET_STATUS]            = { "GET_STATUS", P_NONE, F_NONE, true, P_U64 },
};

static size_t
payload_size(enum payload p)
{
	switch (p) {
	case P_NONE: return 0;
	case P_U64: return sizeof(uint64_t);
	case P_STATE: return sizeof(struct vu_vring_state);
	case P_ADDR: return sizeof(struct vu_vring_addr);
	case P_LOG: return sizeof(struct vu_log);
	case P_MEM: return 0; /* variable, checked separately */
	}
	return 0;
}

const char *
vu_request_name(uint32_t request)
{
	return request < VU_REQUEST_MAX && reqs[request].name ? reqs[request].name : "UNKNOWN";
}

bool
vu_expects_reply(const struct vu_msg *m, uint64_t protocol_features)
{
	if (m->request >= VU_REQUEST_MAX || reqs[m->request].name == NULL)
		return false;
	if (reqs[m->request].always_reply)
		return true; /* incl. SET_LOG_BASE: DPDK answers it with an empty payload */
	return (m->flags & VU_FLAG_NEED_REPLY) && (protocol_features & (1ull << VU_PF_REPLY_ACK));
}

static int __attribute__((format(printf, 3, 4)))
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int
vu_check_request(const struct vu_msg *m, char *err, size_t errlen)
{
	const struct req_info *r;
	unsigned want_fds = 0;

	if (m->request >= VU_REQUEST_MAX || reqs[m->request].name == NULL)
		return fail(err, errlen, "request %u is not relayed", m->request);
	r = &reqs[m->request];
	if ((m->flags & 0x3) != VU_VERSION || (m->flags & VU_FLAG_REPLY))
		return fail(err, errlen, "%s: bad flags 0x%x", r->name, m->flags);
	if (r->payload == P_MEM) {
		if (m->size < 8 || m->p.mem.nregions == 0 || m->p.mem.nregions > VU_MAX_REGIONS ||
		    m->size != 8 + m->p.mem.nregions * sizeof(struct vu_region))
			return fail(err, errlen, "%s: size %u does not fit %u regions", r->name,
				    m->size, m->p.mem.nregions);
		for (uint32_t i = 0; i < m->p.mem.nregions; i++) {
			const struct vu_region *g = &m->p.mem.regions[i];
			if (g->memory_size == 0 || g->userspace_addr + g->memory_size < g->userspace_addr ||
			    g->mmap_offset + g->memory_size < g->mmap_offset)
				return fail(err, errlen, "%s: region %u is empty or wraps", r->name, i);
		}
	} else if (m->size != payload_size(r->payload)) {
		return fail(err, errlen, "%s: payload of %u bytes, expected %zu", r->name, m->size,
			    payload_size(r->payload));
	}
	switch (r->fds) {
	case F_NONE: want_fds = 0; break;
	case F_ONE: want_fds = 1; break;
	case F_RING: want_fds = (m->p.u64 & VU_VRING_NOFD_MASK) ? 0 : 1; break;
	case F_REGIONS: want_fds = m->p.mem.nregions; break;
	}
	if ((unsigned)m->nfds != want_fds)
		return fail(err, errlen, "%s: carries %d fds, expected %u", r->name, m->nfds,
			    want_fds);
	switch (r->payload) {
	case P_STATE:
		if (m->p.state.index >= VU_MAX_VRINGS)
			return fail(err, errlen, "%s: vring %u out of range (max %u)", r->name,
				    m->p.state.index, VU_MAX_VRINGS - 1);
		if (m->request == VU_SET_VRING_NUM &&
		    (m->p.state.num == 0 || m->p.state.num > 32768 ||
		     (m->p.state.num & (m->p.state.num - 1))))
			return fail(err, errlen, "%s: ring size %u is not a power of two <= 32768",
				    r->name, m->p.state.num);
		if (m->request == VU_SET_VRING_ENABLE && m->p.state.num > 1)
			return fail(err, errlen, "%s: enable must be 0 or 1, got %u", r->name,
				    m->p.state.num);
		break;
	case P_ADDR:
		if (m->p.addr.index >= VU_MAX_VRINGS)
			return fail(err, errlen, "%s: vring %u out of range (max %u)", r->name,
				    m->p.addr.index, VU_MAX_VRINGS - 1);
		/* virtio: the used ring (packed: device event area) is 4-byte aligned */
		if (m->p.addr.used_user_addr & 3)
			return fail(err, errlen, "%s: used ring address 0x%llx is not 4-byte aligned",
				    r->name, (unsigned long long)m->p.addr.used_user_addr);
		break;
	case P_U64:
		if (r->fds == F_RING &&
		    ((m->p.u64 & VU_VRING_IDX_MASK) >= VU_MAX_VRINGS ||
		     (m->p.u64 & ~(uint64_t)(VU_VRING_IDX_MASK | VU_VRING_NOFD_MASK))))
			return fail(err, errlen, "%s: bad vring word 0x%llx", r->name,
				    (unsigned long long)m->p.u64);
		break;
	default:
		break;
	}
	return 0;
}

int
vu_check_reply(const struct vu_msg *m, uint32_t request, char *err, size_t errlen)
{
	const struct req_info *r = &reqs[request];

	if (m->request != request)
		return fail(err, errlen, "reply to %s answers request %u instead", r->name,
			    m->request);
	if (!(m->flags & VU_FLAG_REPLY) || (m->flags & 0x3) != VU_VERSION)
		return fail(err, errlen, "reply to %s: bad flags 0x%x", r->name, m->flags);
	if (m->nfds != 0)
		return fail(err, errlen, "reply to %s carries %d fds", r->name, m->nfds);
	if (m->size != payload_size(r->reply))
		return fail(err, errlen, "reply to %s: %u bytes, expected %zu", r->name, m->size,
			    payload_size(r->reply));
	return 0;
}

void
vu_close_fds(struct vu_msg *m)
{
	for (int i = 0; i < m->nfds; i++)
		if (m->fds[i] >= 0)
			close(m->fds[i]);
	m->nfds = 0;
}

static int
wait_readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int rc;

	do
		rc = poll(&p, 1, timeout_ms);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	return rc == 0 ? -ETIMEDOUT : 0;
}

/* Read exactly len bytes (after the header) within timeout_ms. */
static int
read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n == 0) {
			return -EPIPE;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int rc = wait_readable(fd, timeout_ms);
			if (rc != 0)
				return rc;
		} else if (errno != EINTR) {
			return -errno;
		}
	}
	return 0;
}

int
vu_recv(int fd, struct vu_msg *m, int timeout_ms)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
		struct cmsghdr align;
	} ctrl;
	struct iovec iov = { .iov_base = m, .iov_len = VU_HDR_SIZE };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl.buf,
			     .msg_controllen = sizeof(ctrl.buf) };
	ssize_t n;
	int rc;

	m->nfds = 0;
	rc = wait_readable(fd, timeout_ms);
	if (rc != 0)
		return rc;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return -EPIPE;
	if (n < 0)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		memcpy(m->fds + m->nfds, CMSG_DATA(c), sizeof(int) * (size_t)k);
		m->nfds += k;
	}
	if (mh.msg_flags & MSG_CTRUNC) { /* more fds than any request carries */
		vu_close_fds(m);
		return -EPROTO;
	}
	/* a frame that has begun must complete soon: a peer that stops mid-frame is broken */
	if ((size_t)n < VU_HDR_SIZE &&
	    (rc = read_full(fd, (uint8_t *)m + n, VU_HDR_SIZE - (size_t)n, VU_FRAME_MS)) != 0) {
		vu_close_fds(m);
		return rc == -ETIMEDOUT ? -EPROTO : rc;
	}
	if (m->size > VU_MAX_PAYLOAD) {
		vu_close_fds(m);
		return -EPROTO;
	}
	if (m->size > 0 && (rc = read_full(fd, &m->p, m->size, VU_FRAME_MS)) != 0) {
		vu_close_fds(m);
		return rc == -ETIMEDOUT ? -EPROTO : rc;
	}
	return 0;
}

int
vu_send(int fd, const struct vu_msg *m)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
		struct cmsghdr align;
	} ctrl;
	/* header and payload apart: the payload union is 8-byte aligned, 4 bytes after the header */
	struct iovec iov[2] = { { .iov_base = (void *)m, .iov_len = VU_HDR_SIZE },
				{ .iov_base = (void *)&m->p, .iov_len = m->size } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = m->size ? 2 : 1 };
	ssize_t n;

	if (m->nfds > 0) {
		struct cmsghdr *c;
		mh.msg_control = ctrl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)m->nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)m->nfds);
		memcpy(CMSG_DATA(c), m->fds, sizeof(int) * (size_t)m->nfds);
	}
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == VU_HDR_SIZE + m->size ? 0 : -EIO;
}

void
vu_msg_init(struct vu_msg *m, uint32_t request, uint32_t size)
{
	m->request = request;
	m->flags = VU_VERSION;
	m->size = size;
	m->nfds = 0;
}

void
vu_msg_u64(struct vu_msg *m, uint32_t request, uint64_t v)
{
	vu_msg_init(m, request, sizeof(uint64_t));
	m->p.u64 = v;
}

void
vu_msg_state(struct vu_msg *m, uint32_t request, uint32_t index, uint32_t num)
{
	vu_msg_init(m, request, sizeof(struct vu_vring_state));
	m->p.state.index = index;
	m->p.state.num = num;
}
