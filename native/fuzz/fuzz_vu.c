/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer harness for the keeper's frame checks and session state (keeper_core: vu.c,
 * session.c), driven the way the relay drives them (relay.c on_frontend / relay_request).
 *
 * The input is a sequence of frames, each:
 *   1 byte   b: fd count = b % 9, and k = b / 9 selects
 *              bit 0    the fds are eventfds (not mappable) instead of the guest memfd,
 *              bit 1    the header is written in two pieces (vu_recv's short-header path),
 *              bits 2-4 the replay callback fails at that message of each stage (0: never);
 *            b == 0xff: one fd more than any frame may carry (vu_recv refuses it)
 *   12 bytes request, flags, size (host order, as given)
 *   size bytes of payload
 * When the input ends mid-frame, what there is of the frame is written and the frontend hangs
 * up: vu_recv must fail and close the fds that came with it. A size over VU_MAX_PAYLOAD is
 * written as a bare header and vu_recv must refuse it; the relay then drops the connection, so
 * the input ends there. Bits 16-19 of a request's flags (which no check looks at) make the
 * synthetic backend reply malformed: wrong request, no reply flag, an fd, a wrong size.
 *
 * Every frame goes through a real socketpair into vu_recv, then vu_check_request and
 * kp_state_apply with map_memory on, as the relay calls it (the memfd is MEM_SIZE bytes; a
 * region may claim more, and reading there must fail cleanly, not fault). A refusal clears the
 * state as the relay's frontend close does, and the next frame is a new connection.
 * After each frame: kp_state_movable, kp_state_used_idx for every ring, and kp_state_replay of
 * all three stages, every replayed message sent through vu_send/vu_recv and checked.
 *
 * Invariants (a violation traps):
 *   - a replayed message passes vu_check_request, carries open fds, survives the wire intact;
 *   - the pre-load and start replays, applied to a fresh state (a new backend), are accepted
 *     and give it the session's features, memory and started rings;
 *   - a check's verdict depends only on the bytes received (not on what lies past m->size);
 *   - a refused kp_state_apply leaves the state byte-for-byte unchanged and says why;
 *   - the state's fds are open, close-on-exec, distinct, and none is one of the message's;
 *   - a well-formed reply passes vu_check_reply and a malformed one does not;
 *   - kp_state_used_idx finds the region the reference model finds and reads its 16 bits;
 *   - after kp_state_clear no fd is left over (counted in /proc/self/fd per input).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "session.h"

#define MEM_SIZE (4u * 4096u) /* the guest memory file: four pages */

#define RF_WRONG_REQUEST (1u << 16)
#define RF_NO_REPLY_FLAG (1u << 17)
#define RF_WITH_FD (1u << 18)
#define RF_WRONG_SIZE (1u << 19)
#define RF_ALL (RF_WRONG_REQUEST | RF_NO_REPLY_FLAG | RF_WITH_FD | RF_WRONG_SIZE)

static int memfd = -1, evfd = -1;
static bool trace; /* FUZZ_VU_TRACE=1: one line per frame on stderr (triage of a crash input) */
static int sock[2] = { -1, -1 }; /* [0] the frontend's end, [1] the keeper's */

#define CHECK(cond)                                                                          \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "fuzz_vu: %s:%d: invariant failed: %s\n", __FILE__,  \
				__LINE__, #cond);                                            \
			__builtin_trap();                                                    \
		}                                                                            \
	} while (0)

static uint8_t
pattern(uint64_t off)
{
	return (uint8_t)(off * 131u + (off >> 8) + 0x5a);
}

static void
setup_once(void)
{
	uint8_t page[MEM_SIZE];

	if (memfd >= 0)
		return;
	trace = getenv("FUZZ_VU_TRACE") != NULL;
	memfd = memfd_create("fuzz_vu_guest", MFD_CLOEXEC);
	evfd = eventfd(0, EFD_CLOEXEC);
	CHECK(memfd >= 0 && evfd >= 0);
	for (uint32_t i = 0; i < MEM_SIZE; i++)
		page[i] = pattern(i);
	CHECK(pwrite(memfd, page, sizeof(page), 0) == (ssize_t)sizeof(page));
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock) == 0);
}

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	CHECK(d != NULL);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static bool
fd_open(int fd)
{
	return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

/* Write bytes with nfds copies of fd attached (the kernel installs each as a new fd). */
static void
send_raw(const void *buf, size_t len, int fd, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * (VU_MAX_FDS + 1))];
		struct cmsghdr align;
	} ctrl;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds > 0) {
		struct cmsghdr *c;
		int fds[VU_MAX_FDS + 1];

		for (int i = 0; i < nfds; i++)
			fds[i] = fd;
		mh.msg_control = ctrl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	CHECK(sendmsg(sock[0], &mh, MSG_NOSIGNAL) == (ssize_t)len);
}

/* The input ends mid-frame: write what there is, hang up, and open a new connection. */
static void
truncated_frame(const uint8_t *buf, size_t len, int fd, int nfds)
{
	static struct vu_msg m;

	if (len > 0)
		send_raw(buf, len, fd, nfds);
	CHECK(shutdown(sock[0], SHUT_WR) == 0);
	memset(&m, 0xa5, sizeof(m));
	CHECK(vu_recv(sock[1], &m, 0) == -EPIPE);
	CHECK(m.nfds == 0);
	close(sock[0]);
	close(sock[1]);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock) == 0);
}

static bool
socket_empty(void)
{
	char c;

	return recv(sock[1], &c, 1, MSG_DONTWAIT | MSG_PEEK) < 0 && errno == EAGAIN;
}

/* A check's verdict must not depend on the bytes past the payload it received. */
static int
check_request_stable(const struct vu_msg *m, char *err, size_t errlen)
{
	static struct vu_msg alt;
	char err2[256];
	int rc = vu_check_request(m, err, errlen);

	alt = *m;
	memset(alt.p.raw + m->size, (m->size < VU_MAX_PAYLOAD && m->p.raw[m->size] == 0) ? 0xff : 0,
	       VU_MAX_PAYLOAD - m->size);
	CHECK(vu_check_request(&alt, err2, sizeof(err2)) == rc);
	CHECK(rc == 0 || err[0] != '\0');
	return rc;
}

/* ---- the state's fds ---- */

static void
state_fds_ok(const struct kp_state *st, const struct vu_msg *m)
{
	int fds[VU_MAX_REGIONS + 3 * VU_MAX_VRINGS];
	int n = 0;

	for (int i = 0; i < VU_MAX_REGIONS; i++) {
		CHECK(st->mem_fds[i] >= -1);
		if (st->mem_fds[i] >= 0)
			fds[n++] = st->mem_fds[i];
		CHECK(st->mem_fds[i] >= 0 || st->maps[i] == NULL);
		CHECK(!st->mem_set || i < (int)st->mem.nregions || st->mem_fds[i] < 0);
		CHECK(!st->mem_set || i >= (int)st->mem.nregions || st->mem_fds[i] >= 0);
	}
	for (int i = 0; i < VU_MAX_VRINGS; i++) {
		const struct kp_vring *vr = &st->vr[i];
		const int ring[3] = { vr->kick, vr->call, vr->err };
		for (int j = 0; j < 3; j++) {
			CHECK(ring[j] >= -1);
			if (ring[j] >= 0)
				fds[n++] = ring[j];
		}
	}
	for (int i = 0; i < n; i++) {
		int fl = fcntl(fds[i], F_GETFD);
		CHECK(fl >= 0 && (fl & FD_CLOEXEC));
		for (int j = i + 1; j < n; j++)
			CHECK(fds[i] != fds[j]);
		for (int j = 0; m != NULL && j < m->nfds; j++)
			CHECK(fds[i] != m->fds[j]);
	}
}

static bool
state_holds_no_fd(const struct kp_state *st)
{
	for (int i = 0; i < VU_MAX_REGIONS; i++)
		if (st->mem_fds[i] >= 0 || st->maps[i] != NULL)
			return false;
	for (int i = 0; i < VU_MAX_VRINGS; i++)
		if (st->vr[i].kick >= 0 || st->vr[i].call >= 0 || st->vr[i].err >= 0)
			return false;
	return true;
}

/* ---- used->idx, reference model: the first mapped region whose range, and whose file (every
 * mapped region is the MEM_SIZE memfd), holds the 4 bytes of struct vring_used { flags, idx }
 * at the ring's used address; the value comes from the memfd's pattern */

static int
expect_used_idx(const struct kp_state *st, uint32_t ring, uint16_t *idx)
{
	uint64_t ua;

	if (ring >= st->nvrings || !st->vr[ring].addr_set)
		return -ENOENT;
	if (st->features & (1ull << VU_F_RING_PACKED))
		return -ENOTSUP;
	ua = st->vr[ring].addr.used_user_addr;
	for (uint32_t i = 0; i < st->mem.nregions; i++) {
		const struct vu_region *r = &st->mem.regions[i];
		uint64_t off;
		if (st->maps[i] == NULL || ua < r->userspace_addr || r->memory_size < 4 ||
		    ua - r->userspace_addr > r->memory_size - 4)
			continue;
		off = r->mmap_offset + (ua - r->userspace_addr);
		if (off + 4 > MEM_SIZE)
			continue;
		*idx = (uint16_t)(pattern(off + 2) | pattern(off + 3) << 8);
		return 0;
	}
	return -EFAULT;
}

static void
check_used_idx(const struct kp_state *st)
{
	for (uint32_t i = 0; i <= VU_MAX_VRINGS; i++) {
		uint16_t got = 0xdead, want = 0xbeef;
		int rc = kp_state_used_idx(st, i, &got);
		int exp = expect_used_idx(st, i, &want);
		if (trace && rc != -ENOENT)
			fprintf(stderr, "fuzz_vu:   ring %u: used_idx %d (%u), model %d (%u)\n", i,
				rc, got, exp, want);
		CHECK(rc == exp);
		CHECK(rc != 0 || got == want);
	}
}

/* ---- replay ---- */

struct replay {
	unsigned count, fail_at;
	struct kp_state *backend; /* what a new backend learns from the replay, or NULL */
};

static int
replay_send(void *arg, struct vu_msg *m)
{
	struct replay *r = arg;
	static struct vu_msg got;
	char err[256] = "";

	CHECK(m->nfds >= 0 && m->nfds <= VU_MAX_FDS);
	for (int i = 0; i < m->nfds; i++)
		CHECK(fd_open(m->fds[i]));
	if (vu_check_request(m, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_vu: the keeper replays what it would refuse: %s\n", err);
		__builtin_trap();
	}
	/* over the wire to a "backend", as kp_preload/start_on send it */
	CHECK(vu_send(sock[0], m) == 0);
	memset(&got, 0xa5, sizeof(got));
	CHECK(vu_recv(sock[1], &got, 0) == 0);
	CHECK(got.request == m->request && got.flags == m->flags && got.size == m->size);
	CHECK(memcmp(&got.p, &m->p, m->size) == 0);
	CHECK(got.nfds == m->nfds);
	CHECK(vu_check_request(&got, err, sizeof(err)) == 0);
	if (r->backend != NULL && kp_state_apply(r->backend, &got, false, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_vu: the keeper's own replay is not accepted: %s\n", err);
		__builtin_trap();
	}
	vu_close_fds(&got);
	if (++r->count == r->fail_at)
		return -EIO;
	return 0;
}

/* A backend pre-loaded and started from the replay knows what the session knows: features,
 * memory, and every started ring (positions from bases, enable bits when they gate the ring). */
static void
replay_complete(const struct kp_state *st, const struct kp_state *be, const uint32_t *bases)
{
	bool proto = st->features & (1ull << VU_F_PROTOCOL_FEATURES);
	bool status = st->status_set && (st->protocol_features & (1ull << VU_PF_STATUS));

	CHECK(be->features_set == st->features_set && be->features == st->features);
	CHECK(be->pf_set == st->pf_set && be->protocol_features == st->protocol_features);
	CHECK(be->owner == st->owner);
	CHECK(be->mtu_set == st->mtu_set && be->mtu == st->mtu);
	CHECK(be->status_set == status && (!status || be->status == st->status));
	CHECK(be->mem_set == st->mem_set);
	CHECK(!st->mem_set ||
	      memcmp(&be->mem, &st->mem, 8 + st->mem.nregions * sizeof(struct vu_region)) == 0);
	CHECK(be->nvrings <= st->nvrings);
	for (uint32_t i = 0; i < st->nvrings; i++) {
		const struct kp_vring *a = &st->vr[i], *b = &be->vr[i];
		if (!a->started) {
			CHECK(!b->num_set && !b->addr_set && !b->kick_set && !b->call_set &&
			      !b->err_set && !b->started);
			continue;
		}
		CHECK(b->started && !b->stopped && b->base == bases[i]);
		CHECK(b->num_set == a->num_set && (!a->num_set || b->num == a->num));
		CHECK(b->addr_set == a->addr_set &&
		      (!a->addr_set || memcmp(&b->addr, &a->addr, sizeof(a->addr)) == 0));
		CHECK(b->kick_set == a->kick_set && b->kick_nofd == a->kick_nofd &&
		      (b->kick >= 0) == (a->kick >= 0));
		CHECK(b->call_set == a->call_set && b->call_nofd == a->call_nofd &&
		      (b->call >= 0) == (a->call >= 0));
		CHECK(b->err_set == a->err_set && (b->err >= 0) == (a->err >= 0));
		CHECK(b->enabled == (proto && a->enabled));
	}
}

static void
replay_all(const struct kp_state *st, unsigned fail_at)
{
	static struct kp_state be;
	uint32_t bases[VU_MAX_VRINGS];

	for (uint32_t i = 0; i < VU_MAX_VRINGS; i++) {
		uint16_t used;
		bases[i] = kp_state_used_idx(st, i, &used) == 0 ? used : st->vr[i].base;
	}
	kp_state_init(&be);
	for (enum kp_stage s = KP_PRELOAD; s <= KP_START; s++) {
		/* a new backend gets the pre-load then the start; RINGS goes to an old one */
		struct replay r = { .fail_at = fail_at, .backend = s == KP_RINGS ? NULL : &be };
		int rc = kp_state_replay(st, s, bases, replay_send, &r);
		CHECK(rc == (fail_at != 0 && r.count == fail_at ? -EIO : 0));
		CHECK(fail_at == 0 || r.count <= fail_at);
	}
	if (fail_at == 0)
		replay_complete(st, &be, bases);
	kp_state_clear(&be);
}

/* ---- the backend's answer (relay_request / kp_backend_call) ---- */

static void
backend_reply(struct kp_state *st, const struct vu_msg *m)
{
	static struct vu_msg reply;
	char err[256] = "";
	bool want = vu_expects_reply(m, st->pf_set ? st->protocol_features : 0) ||
		    m->request == VU_GET_FEATURES || m->request == VU_GET_PROTOCOL_FEATURES;
	uint32_t bad = m->flags & RF_ALL;
	int rc;

	if (!want)
		return;
	memset(&reply, 0, sizeof(reply));
	reply.request = m->request;
	reply.flags = VU_VERSION | VU_FLAG_REPLY;
	reply.size = m->request == VU_SET_LOG_BASE ? 0 : 8;
	if (m->request == VU_GET_VRING_BASE) {
		reply.p.state.index = m->p.state.index;
		reply.p.state.num = m->p.state.num; /* the position the backend reports */
	} else {
		reply.p.u64 = m->p.u64;
	}
	if (bad & RF_WRONG_REQUEST)
		reply.request = m->request == VU_GET_FEATURES ? VU_SET_FEATURES : VU_GET_FEATURES;
	if (bad & RF_NO_REPLY_FLAG)
		reply.flags = VU_VERSION;
	if (bad & RF_WITH_FD) {
		reply.fds[0] = -1; /* never touched: vu_check_reply touches no fd */
		reply.nfds = 1;
	}
	if (bad & RF_WRONG_SIZE)
		reply.size = reply.size == 0 ? 8 : 16;
	rc = vu_check_reply(&reply, m->request, err, sizeof(err));
	CHECK((rc == 0) == (bad == 0));
	CHECK(rc == 0 || err[0] != '\0');
	if (rc == 0)
		kp_state_reply(st, m, &reply);
}

/* ---- one input ---- */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kp_state st, before;
	static struct vu_msg m;
	size_t pos = 0;
	int fds_before;

	setup_once();
	fds_before = count_fds();
	kp_state_init(&st);

	while (pos < size) {
		uint8_t b = data[pos++];
		int nfds = b % 9;
		unsigned k = b / 9;
		int fd = (k & 1) ? evfd : memfd;
		unsigned fail_at = (k >> 2) & 7;
		uint8_t frame[VU_HDR_SIZE + VU_MAX_PAYLOAD];
		uint32_t psize;
		char err[256] = "";
		int rc;

		if (size - pos < VU_HDR_SIZE) {
			truncated_frame(data + pos, size - pos, fd, nfds);
			break;
		}
		memcpy(frame, data + pos, VU_HDR_SIZE);
		pos += VU_HDR_SIZE;
		memcpy(&psize, frame + 8, sizeof(psize));
		memset(&m, 0xa5, sizeof(m)); /* the relay's message is uninitialised stack */

		if (b == 0xff) { /* more fds than any frame carries: refused, connection dropped */
			send_raw(frame, VU_HDR_SIZE, fd, VU_MAX_FDS + 1);
			CHECK(vu_recv(sock[1], &m, 0) == -EPROTO);
			CHECK(m.nfds == 0);
			break;
		}
		if (psize > VU_MAX_PAYLOAD) { /* oversized: refused after the header */
			send_raw(frame, VU_HDR_SIZE, fd, nfds);
			CHECK(vu_recv(sock[1], &m, 0) == -EPROTO);
			CHECK(m.nfds == 0);
			break;
		}
		if (size - pos < psize) {
			memcpy(frame + VU_HDR_SIZE, data + pos, size - pos);
			truncated_frame(frame, VU_HDR_SIZE + (size - pos), fd, nfds);
			break;
		}
		memcpy(frame + VU_HDR_SIZE, data + pos, psize);
		pos += psize;
		if ((k & 2) && nfds > 0) { /* the header arrives in two pieces */
			size_t cut = 1 + (psize + (size_t)b) % (VU_HDR_SIZE - 1);
			send_raw(frame, cut, fd, nfds);
			send_raw(frame + cut, VU_HDR_SIZE + psize - cut, -1, 0);
		} else {
			send_raw(frame, VU_HDR_SIZE + psize, fd, nfds);
		}
		rc = vu_recv(sock[1], &m, 0);
		CHECK(rc == 0);
		CHECK(m.nfds == nfds && m.size == psize && memcmp(&m, frame, VU_HDR_SIZE) == 0);
		CHECK(memcmp(&m.p, frame + VU_HDR_SIZE, psize) == 0);
		CHECK(socket_empty());

		/* on_frontend: check, record; a refusal closes the connection (state cleared) */
		rc = check_request_stable(&m, err, sizeof(err));
		if (trace)
			fprintf(stderr, "fuzz_vu: %s flags 0x%x size %u fds %d%s%s\n",
				vu_request_name(m.request), m.flags, m.size, m.nfds,
				rc ? ": refused: " : "", rc ? err : "");
		if (rc != 0) {
			vu_close_fds(&m);
			kp_state_clear(&st);
			CHECK(state_holds_no_fd(&st));
			continue;
		}
		memcpy(&before, &st, sizeof(st));
		if (kp_state_apply(&st, &m, true, err, sizeof(err)) != 0) {
			if (trace)
				fprintf(stderr, "fuzz_vu:   not recorded: %s\n", err);
			CHECK(err[0] != '\0');
			CHECK(memcmp(&before, &st, sizeof(st)) == 0);
			vu_close_fds(&m);
			kp_state_clear(&st);
			CHECK(state_holds_no_fd(&st));
			continue;
		}
		CHECK(st.nvrings <= VU_MAX_VRINGS);
		state_fds_ok(&st, &m);
		backend_reply(&st, &m); /* relay_request, before the message's fds are closed */
		vu_close_fds(&m);
		state_fds_ok(&st, NULL);

		{
			char why[256] = "";
			if (!kp_state_movable(&st, why, sizeof(why)))
				CHECK(why[0] != '\0');
			(void)kp_state_packed(&st);
		}
		check_used_idx(&st);
		replay_all(&st, fail_at);
		CHECK(socket_empty());
	}

	kp_state_clear(&st);
	CHECK(state_holds_no_fd(&st));
	CHECK(socket_empty());
	if (count_fds() != fds_before) {
		fprintf(stderr, "fuzz_vu: fd leak: %d fds before the input, %d after\n", fds_before,
			count_fds());
		__builtin_trap();
	}
	return 0;
}
