/* SPDX-License-Identifier: Apache-2.0
 * Pacing a stock OVS-DPDK generation's vhost event thread through a switch (DESIGN §12).
 *
 * OVS 3.1 applies a vhost ring's enable (DPDK's vring_state_changed) on its "ovs_vhost" thread,
 * which polls a queue and, while the queue stays empty, sleeps 1, 2, 4 ... up to 64 ms between
 * looks. Until it has looked, the port of a VM just handed to that generation drops every frame
 * sent to the VM (no transmit queue mapped) and leaves the VM's own frames in its ring (receive
 * queue disabled): a switch costs up to 64 ms of loss, however fast the handoff itself is.
 *
 * So the keeper owns one more port in every listen-mode generation: ".pace", a dpdkvhostuserclient
 * connected to <run_dir>/vhost/.pace.sock, whose ring pair lives in a 64 KB memfd of the keeper's
 * and never carries a frame. Flipping its queue 0 enable queues one event on that thread. Once
 * the thread finds events at every look its back-off stays short, and it climbs back to 64 ms
 * within 63 ms of the last one: so pacing flips every PACE_SPARSE_US from the warm-up (the
 * thread, maybe in its longest sleep, is surely awake PACE_WAKE_MS later; its looks are then at
 * most ~4 ms apart), and every PACE_PERIOD_US in the last ms before the switch until just after
 * it, so the VM's own enable is applied within about a millisecond. Between switches the port
 * is silent (OVS logs one line per flip).
 *
 * One thread (the pacer) owns every pace connection: it accepts OVS's, sets the device up and
 * flips; the control thread only asks for pacing (kp_pace_warm/kp_pace_settle) under pace_lock,
 * never kp.lock, so the flips go on while a handoff holds kp.lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "keeper.h"
#include "vu.h"

#define PACE_MEM 0x10000u               /* the memfd: two rings of PACE_RING entries */
#define PACE_UVA 0x7e0000000000ull      /* the address the device is told the memfd is at */
#define PACE_RING 64u
#define PACE_PERIOD_US 800u             /* one flip per period near a switch */
#define PACE_SPARSE_US 4000u            /* and per this while the thread is waking up */
#define PACE_WAKE_MS 70u                /* the event thread's longest sleep (64 ms) and margin */
#define PACE_LINGER_MS 200u             /* pacing held after a warm-up with no switch yet */
#define PACE_AFTER_MS 15u               /* and after a switch, for the VM's enable to be applied */
#define VIRTIO_F_VERSION_1 32

struct pace {
	int lfd;                /* listening at <run_dir>/vhost/.pace.sock, -1: generation not paced */
	int fd;                 /* OVS's connection, -1: none yet */
	bool ready;             /* the device is set up: flips reach the event thread */
	bool on;                /* queue 0's enable as last sent */
	int mfd, kick[2], call[2];
	uint64_t dense_from_ns; /* flips sparse until here, then dense ... */
	uint64_t dense_until_ns;/* ... until here */
	uint64_t last_flip_ns;
	uint64_t flips;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static struct pace pc[KP_MAX_GENS];
static pthread_mutex_t pace_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pace_cond;
static pthread_t pacer;
static bool pacer_up, slots_up;
static volatile bool frozen; /* a keeper upgrade writes the state: the pacer is stopped */

static void
conn_close(struct pace *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	p->ready = false;
	for (int i = 0; i < 2; i++) {
		if (p->kick[i] >= 0)
			close(p->kick[i]);
		if (p->call[i] >= 0)
			close(p->call[i]);
		p->kick[i] = p->call[i] = -1;
	}
	if (p->mfd >= 0)
		close(p->mfd);
	p->mfd = -1;
}

static int
send_fd(int fd, struct vu_msg *m, int xfd)
{
	m->fds[0] = xfd;
	m->nfds = 1;
	return vu_send(fd, m);
}

/* A GET request's u64 answer. */
static int
get_u64(int fd, uint32_t request, uint64_t *v)
{
	struct vu_msg m;
	int rc;

	vu_msg_init(&m, request, 0);
	if ((rc = vu_send(fd, &m)) != 0 || (rc = vu_recv(fd, &m, KP_REPLY_TIMEOUT_MS)) != 0)
		return rc;
	if (m.request != request || m.size != sizeof(uint64_t)) {
		vu_close_fds(&m);
		return -EPROTO;
	}
	*v = m.p.u64;
	return 0;
}

/* Set the device up the way a virtio driver would: features, memory, two rings, both enabled
 * (the generation's OVS then reports it added). 0 or -errno. */
static int
device_setup(struct pace *p)
{
	uint64_t features = 0, pf = 0;
	struct vu_msg m;
	int rc;

	if ((rc = get_u64(p->fd, VU_GET_FEATURES, &features)) != 0)
		return rc;
	features &= (1ull << VIRTIO_F_VERSION_1) | (1ull << VU_F_PROTOCOL_FEATURES);
	vu_msg_u64(&m, VU_SET_FEATURES, features);
	if ((rc = vu_send(p->fd, &m)) != 0)
		return rc;
	if (features & (1ull << VU_F_PROTOCOL_FEATURES)) {
		if ((rc = get_u64(p->fd, VU_GET_PROTOCOL_FEATURES, &pf)) != 0)
			return rc;
		vu_msg_u64(&m, VU_SET_PROTOCOL_FEATURES, 0); /* none needed: no reply acks */
		if ((rc = vu_send(p->fd, &m)) != 0)
			return rc;
	}
	vu_msg_init(&m, VU_SET_OWNER, 0);
	if ((rc = vu_send(p->fd, &m)) != 0)
		return rc;
	p->mfd = memfd_create("hitless-pace", MFD_CLOEXEC);
	if (p->mfd < 0 || ftruncate(p->mfd, PACE_MEM) != 0)
		return -errno;
	vu_msg_init(&m, VU_SET_MEM_TABLE, sizeof(uint64_t) + sizeof(struct vu_region));
	m.p.mem.nregions = 1;
	m.p.mem.padding = 0;
	m.p.mem.regions[0] = (struct vu_region){ .guest_phys_addr = 0, .memory_size = PACE_MEM,
						 .userspace_addr = PACE_UVA, .mmap_offset = 0 };
	if ((rc = send_fd(p->fd, &m, p->mfd)) != 0)
		return rc;
	for (uint32_t q = 0; q < 2; q++) {
		uint64_t base = PACE_UVA + q * (PACE_MEM / 2);

		if ((p->kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
		    (p->call[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
			return -errno;
		vu_msg_state(&m, VU_SET_VRING_NUM, q, PACE_RING);
		if ((rc = vu_send(p->fd, &m)) != 0)
			return rc;
		vu_msg_state(&m, VU_SET_VRING_BASE, q, 0);
		if ((rc = vu_send(p->fd, &m)) != 0)
			return rc;
		vu_msg_init(&m, VU_SET_VRING_ADDR, sizeof(struct vu_vring_addr));
		m.p.addr = (struct vu_vring_addr){ .index = q, .flags = 0, .desc_user_addr = base,
						   .avail_user_addr = base + 0x1000,
						   .used_user_addr = base + 0x2000 };
		if ((rc = vu_send(p->fd, &m)) != 0)
			return rc;
		vu_msg_u64(&m, VU_SET_VRING_KICK, q);
		if ((rc = send_fd(p->fd, &m, p->kick[q])) != 0)
			return rc;
		vu_msg_u64(&m, VU_SET_VRING_CALL, q);
		if ((rc = send_fd(p->fd, &m, p->call[q])) != 0)
			return rc;
	}
	for (uint32_t q = 0; q < 2; q++) {
		vu_msg_state(&m, VU_SET_VRING_ENABLE, q, 1);
		if ((rc = vu_send(p->fd, &m)) != 0)
			return rc;
	}
	p->on = true;
	p->ready = true;
	return 0;
}

/* One event on the generation's vhost event thread: queue 0's enable flipped. */
static void
flip(struct pace *p)
{
	struct vu_msg m;

	vu_msg_state(&m, VU_SET_VRING_ENABLE, 0, p->on ? 0 : 1);
	if (vu_send(p->fd, &m) != 0) {
		conn_close(p); /* the generation went: its port connects again if it comes back */
		return;
	}
	p->on = !p->on;
	p->flips++;
	p->last_flip_ns = hl_now_ns();
}

static void *
pace_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&pace_lock);
	while (!kp.quit && !frozen) {
		uint64_t now = hl_now_ns(), next = now + 50000000ull; /* look for connections */
		struct timespec ts;

		for (int gi = 0; gi < KP_MAX_GENS; gi++) {
			struct pace *p = &pc[gi];

			if (p->lfd < 0)
				continue;
			if (p->fd < 0) {
				if ((p->fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0 &&
				    device_setup(p) != 0)
					conn_close(p);
				continue;
			}
			if (!p->ready || now >= p->dense_until_ns)
				continue;
			uint64_t period = (now >= p->dense_from_ns ? PACE_PERIOD_US : PACE_SPARSE_US) * 1000ull;
			if (now >= p->last_flip_ns + period) {
				flip(p);
				now = hl_now_ns();
			}
			if (next > p->last_flip_ns + period)
				next = p->last_flip_ns + period;
			if (now < p->dense_from_ns && next > p->dense_from_ns)
				next = p->dense_from_ns;
		}
		ts.tv_sec = (time_t)(next / 1000000000ull);
		ts.tv_nsec = (long)(next % 1000000000ull);
		pthread_cond_timedwait(&pace_cond, &pace_lock, &ts);
	}
	pthread_mutex_unlock(&pace_lock);
	return NULL;
}

static void
init_slots(void)
{
	pthread_condattr_t ca;

	if (slots_up)
		return;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pace_cond, &ca);
	pthread_condattr_destroy(&ca);
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		pc[gi] = (struct pace){ .lfd = -1, .fd = -1, .mfd = -1, .kick = { -1, -1 }, .call = { -1, -1 } };
	slots_up = true;
}

static int
start_pacer(void)
{
	init_slots();
	if (pacer_up || frozen)
		return 0;
	if (pthread_create(&pacer, NULL, pace_main, NULL) != 0)
		return -EAGAIN;
	pacer_up = true;
	return 0;
}

static void
join_pacer(void)
{
	pthread_mutex_lock(&pace_lock);
	pthread_cond_signal(&pace_cond);
	pthread_mutex_unlock(&pace_lock);
	pthread_join(pacer, NULL);
	pacer_up = false;
}

void
kp_pace_freeze(void)
{
	frozen = true;
	if (pacer_up)
		join_pacer();
}

/* After a failed upgrade (the old keeper carries on), and in the new keeper once it is ready:
 * the pacer runs when any generation is paced. */
void
kp_pace_thaw(void)
{
	frozen = false;
	for (int gi = 0; slots_up && gi < KP_MAX_GENS; gi++)
		if (pc[gi].lfd >= 0) {
			start_pacer();
			break;
		}
}

/* The pace port of generation gi as state. NULL while the pacer is setting a connection up
 * (a state written now would catch it half done): the caller writes its state later. */
json_t *
kp_pace_save(int gi, int (*keep)(void *arg, int fd), void *arg)
{
	struct pace *p = &pc[gi];
	json_t *j;

	if (!slots_up || p->lfd < 0)
		return json_null();
	if (pthread_mutex_trylock(&pace_lock) != 0)
		return NULL;
	j = json_pack("{s:s,s:i,s:i,s:b,s:b,s:i,s:[i,i],s:[i,i],s:I}", "path", p->path,
			 "lfd", keep(arg, p->lfd), "fd", keep(arg, p->fd), "ready", p->ready, "on", p->on,
			 "mfd", keep(arg, p->mfd), "kick", keep(arg, p->kick[0]), keep(arg, p->kick[1]),
			 "call", keep(arg, p->call[0]), keep(arg, p->call[1]), "flips", (json_int_t)p->flips);
	pthread_mutex_unlock(&pace_lock);
	return j;
}

int
kp_pace_adopt(int gi, json_t *state)
{
	struct pace *p = &pc[gi];
	const char *path;
	json_int_t flips;
	int ready, on;

	init_slots();
	if (json_is_null(state))
		return 0;
	if (json_unpack_ex(state, NULL, JSON_STRICT, "{s:s,s:i,s:i,s:b,s:b,s:i,s:[i,i],s:[i,i],s:I}",
			   "path", &path, "lfd", &p->lfd, "fd", &p->fd, "ready", &ready, "on", &on,
			   "mfd", &p->mfd, "kick", &p->kick[0], &p->kick[1], "call", &p->call[0],
			   &p->call[1], "flips", &flips) != 0 || strlen(path) >= sizeof(p->path))
		return -1;
	snprintf(p->path, sizeof(p->path), "%s", path);
	p->ready = ready;
	p->on = on;
	p->flips = (uint64_t)flips;
	p->dense_from_ns = p->dense_until_ns = p->last_flip_ns = 0;
	int fds[] = { p->lfd, p->fd, p->mfd, p->kick[0], p->kick[1], p->call[0], p->call[1] };
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0 && fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0)
			return -1;
	return p->lfd >= 0 ? 0 : -1;
}

int
kp_pace_open(int gi, const char *run_dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pace *p = &pc[gi];
	int fd, rc;

	if ((rc = start_pacer()) != 0)
		return rc;
	pthread_mutex_lock(&pace_lock);
	if ((size_t)snprintf(p->path, sizeof(p->path), "%s/vhost/" KP_PACE_SOCK, run_dir) >= sizeof(p->path)) {
		pthread_mutex_unlock(&pace_lock);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, p->path, sizeof(p->path));
	unlink(p->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 2) != 0) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		pthread_mutex_unlock(&pace_lock);
		return rc;
	}
	p->lfd = fd;
	p->dense_from_ns = p->dense_until_ns = 0;
	p->flips = 0;
	pthread_cond_signal(&pace_cond);
	pthread_mutex_unlock(&pace_lock);
	return 0;
}

void
kp_pace_close(int gi)
{
	struct pace *p = &pc[gi];

	if (!slots_up)
		return;
	pthread_mutex_lock(&pace_lock);
	if (p->lfd >= 0) {
		conn_close(p);
		close(p->lfd);
		p->lfd = -1;
		unlink(p->path);
	}
	pthread_mutex_unlock(&pace_lock);
}

uint64_t
kp_pace_warm(int gi)
{
	uint64_t now = hl_now_ns(), wait = 0;
	struct pace *p;

	if (!slots_up || gi < 0)
		return 0;
	p = &pc[gi];
	pthread_mutex_lock(&pace_lock);
	if (p->ready) {
		if (now >= p->dense_until_ns) {
			/* the thread may be asleep: events from now, dense once it is up. Its sleeps
			 * double from 1 ms after the last event it found, so one idle for d ms looks
			 * again within about d ms (64 ms at most) */
			uint64_t idle = now - p->last_flip_ns, up = (PACE_WAKE_MS - 2) * 1000000ull;

			if (idle + 2000000ull < up)
				up = idle + 2000000ull;
			flip(p);
			p->dense_from_ns = now + up;
		}
		if (p->dense_until_ns < p->dense_from_ns + PACE_LINGER_MS * 1000000ull)
			p->dense_until_ns = p->dense_from_ns + PACE_LINGER_MS * 1000000ull;
		wait = p->dense_from_ns + 2000000ull > now ? p->dense_from_ns + 2000000ull - now : 0;
		pthread_cond_signal(&pace_cond);
	}
	pthread_mutex_unlock(&pace_lock);
	return wait;
}

void
kp_pace_settle(int gi)
{
	struct pace *p;

	if (!slots_up || gi < 0)
		return;
	p = &pc[gi];
	pthread_mutex_lock(&pace_lock);
	if (p->ready && p->dense_until_ns > hl_now_ns())
		p->dense_until_ns = hl_now_ns() + PACE_AFTER_MS * 1000000ull;
	pthread_mutex_unlock(&pace_lock);
}

json_t *
kp_pace_json(int gi)
{
	struct pace *p = &pc[gi];
	json_t *j;

	if (!slots_up)
		return json_null();
	pthread_mutex_lock(&pace_lock);
	j = p->lfd < 0 ? json_null() : json_pack("{s:s,s:I}", "state", p->ready ? "ready" : p->fd >= 0 ? "connecting" : "waiting",
		      "flips", (json_int_t)p->flips);
	pthread_mutex_unlock(&pace_lock);
	return j;
}

void
kp_pace_stop(void)
{
	if (!slots_up)
		return;
	if (pacer_up)
		join_pacer();
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		kp_pace_close(gi);
}
