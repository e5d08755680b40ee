/* SPDX-License-Identifier: Apache-2.0
 * Session state tracking and replay (see session.h). Every fd the state holds is a dup it
 * owns; every superseded one is closed at once (a new memory table after a guest reset must
 * not keep the old guest memory pinned, DESIGN.md §2.7).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "session.h"

static void
set_fd(int *slot, int fd)
{
	if (*slot >= 0)
		close(*slot);
	*slot = fd;
}

static void
clear_mem(struct kp_state *st)
{
	for (int i = 0; i < VU_MAX_REGIONS; i++) {
		set_fd(&st->mem_fds[i], -1);
		if (st->maps[i] != NULL)
			munmap(st->maps[i], st->map_len[i]);
		st->maps[i] = NULL;
		st->map_len[i] = 0;
	}
	st->mem_set = false;
	memset(&st->mem, 0, sizeof(st->mem));
}

void
kp_state_init(struct kp_state *st)
{
	memset(st, 0, sizeof(*st));
	for (int i = 0; i < VU_MAX_REGIONS; i++)
		st->mem_fds[i] = -1;
	for (int i = 0; i < VU_MAX_VRINGS; i++)
		st->vr[i].kick = st->vr[i].call = st->vr[i].err = -1;
}

void
kp_state_clear(struct kp_state *st)
{
	uint64_t epoch = st->epoch;

	clear_mem(st);
	for (int i = 0; i < VU_MAX_VRINGS; i++) {
		set_fd(&st->vr[i].kick, -1);
		set_fd(&st->vr[i].call, -1);
		set_fd(&st->vr[i].err, -1);
	}
	kp_state_init(st);
	st->epoch = epoch + 1;
}

/* Take a new memory table: dup its fds and (optionally) map each region read-only. */
static int
apply_mem(struct kp_state *st, const struct vu_msg *m, bool map_memory, char *err, size_t errlen)
{
	int fds[VU_MAX_REGIONS];
	void *maps[VU_MAX_REGIONS] = { 0 };
	size_t lens[VU_MAX_REGIONS] = { 0 };
	uint32_t n = m->p.mem.nregions;

	for (uint32_t i = 0; i < n; i++) {
		const struct vu_region *r = &m->p.mem.regions[i];
		fds[i] = fcntl(m->fds[i], F_DUPFD_CLOEXEC, 0);
		if (fds[i] < 0)
			goto fail;
		if (map_memory) {
			lens[i] = r->memory_size + r->mmap_offset;
			maps[i] = mmap(NULL, lens[i], PROT_READ, MAP_SHARED, fds[i], 0);
			if (maps[i] == MAP_FAILED) {
				maps[i] = NULL;
				close(fds[i]);
				goto fail;
			}
		}
		continue;
fail:
		snprintf(err, errlen, "SET_MEM_TABLE: region %u: %s", i, strerror(errno));
		for (uint32_t j = 0; j < i; j++) {
			if (maps[j])
				munmap(maps[j], lens[j]);
			close(fds[j]);
		}
		return -1;
	}
	clear_mem(st);
	st->mem = m->p.mem;
	for (uint32_t i = 0; i < n; i++) {
		st->mem_fds[i] = fds[i];
		st->maps[i] = maps[i];
		st->map_len[i] = lens[i];
	}
	st->mem_set = true;
	return 0;
}

/* A ring's eventfd (kick, call or err): dup it, or note "no fd" (the frontend polls). */
static int
apply_ring_fd(struct kp_state *st, const struct vu_msg *m, char *err, size_t errlen)
{
	uint32_t idx = (uint32_t)(m->p.u64 & VU_VRING_IDX_MASK);
	bool nofd = m->p.u64 & VU_VRING_NOFD_MASK;
	struct kp_vring *vr = &st->vr[idx];
	int fd = -1;

	if (!nofd && (fd = fcntl(m->fds[0], F_DUPFD_CLOEXEC, 0)) < 0) {
		snprintf(err, errlen, "%s: dup: %s", vu_request_name(m->request), strerror(errno));
		return -1;
	}
	switch (m->request) {
	case VU_SET_VRING_KICK:
		set_fd(&vr->kick, fd);
		vr->kick_set = true;
		vr->kick_nofd = nofd;
		/* a kick starts the ring (QEMU and virtio_user send it last) */
		vr->started = true;
		vr->stopped = false;
		break;
	case VU_SET_VRING_CALL:
		set_fd(&vr->call, fd);
		vr->call_set = true;
		vr->call_nofd = nofd;
		break;
	default:
		set_fd(&vr->err, fd);
		vr->err_set = true;
		break;
	}
	if (idx + 1 > st->nvrings)
		st->nvrings = idx + 1;
	return 0;
}

int
kp_state_apply(struct kp_state *st, const struct vu_msg *m, bool map_memory, char *err,
	       size_t errlen)
{
	uint32_t idx;

	switch (m->request) {
	case VU_GET_FEATURES:
	case VU_GET_PROTOCOL_FEATURES:
	case VU_GET_QUEUE_NUM:
	case VU_GET_STATUS:
	case VU_SEND_RARP:
	case VU_GET_VRING_BASE: /* recorded from the reply */
		return 0;
	case VU_SET_FEATURES:
		st->features = m->p.u64;
		st->features_set = true;
		break;
	case VU_SET_PROTOCOL_FEATURES:
		if (m->p.u64 & ~VU_PF_RELAYABLE) {
			snprintf(err, errlen, "SET_PROTOCOL_FEATURES: 0x%llx asks for features the "
				 "keeper did not offer", (unsigned long long)m->p.u64);
			return -1;
		}
		st->protocol_features = m->p.u64;
		st->pf_set = true;
		break;
	case VU_SET_OWNER:
		st->owner = true;
		break;
	case VU_RESET_OWNER:
		kp_state_clear(st);
		return 0;
	case VU_SET_MEM_TABLE:
		if (apply_mem(st, m, map_memory, err, errlen) != 0)
			return -1;
		break;
	case VU_SET_LOG_BASE:
	case VU_SET_LOG_FD:
		st->log_set = true; /* dirty logging in progress: live migration */
		break;
	case VU_SET_VRING_NUM:
	case VU_SET_VRING_BASE:
	case VU_SET_VRING_ENABLE:
	case VU_SET_VRING_ENDIAN:
		idx = m->p.state.index;
		if (m->request == VU_SET_VRING_NUM) {
			st->vr[idx].num = m->p.state.num;
			st->vr[idx].num_set = true;
		} else if (m->request == VU_SET_VRING_BASE) {
			st->vr[idx].base = m->p.state.num;
		} else if (m->request == VU_SET_VRING_ENABLE) {
			st->vr[idx].enabled = m->p.state.num;
		}
		if (idx + 1 > st->nvrings)
			st->nvrings = idx + 1;
		break;
	case VU_SET_VRING_ADDR:
		idx = m->p.addr.index;
		st->vr[idx].addr = m->p.addr;
		st->vr[idx].addr_set = true;
		if (idx + 1 > st->nvrings)
			st->nvrings = idx + 1;
		break;
	case VU_SET_VRING_KICK:
	case VU_SET_VRING_CALL:
	case VU_SET_VRING_ERR:
		if (apply_ring_fd(st, m, err, errlen) != 0)
			return -1;
		break;
	case VU_NET_SET_MTU:
		st->mtu = m->p.u64;
		st->mtu_set = true;
		break;
	case VU_SET_STATUS:
		st->status = m->p.u64;
		st->status_set = true;
		break;
	default:
		snprintf(err, errlen, "%s is not tracked", vu_request_name(m->request));
		return -1;
	}
	st->epoch++;
	return 0;
}

void
kp_state_reply(struct kp_state *st, const struct vu_msg *req, const struct vu_msg *reply)
{
	struct kp_vring *vr;

	if (req->request != VU_GET_VRING_BASE)
		return;
	vr = &st->vr[req->p.state.index];
	vr->base = reply->p.state.num;
	vr->started = false;
	vr->stopped = true;
	st->epoch++;
}

bool
kp_state_packed(const struct kp_state *st)
{
	return st->features & (1ull << VU_F_RING_PACKED);
}

bool
kp_state_movable(const struct kp_state *st, char *why, size_t whylen)
{
	uint32_t started = 0;

	if (!st->features_set || !st->mem_set) {
		snprintf(why, whylen, "the guest has not finished negotiating (no features or memory yet)");
		return false;
	}
	if (st->log_set || (st->features & (1ull << VU_F_LOG_ALL))) {
		snprintf(why, whylen, "dirty logging is on (live migration in progress)");
		return false;
	}
	for (uint32_t i = 0; i < st->nvrings; i++) {
		if (st->vr[i].stopped) {
			snprintf(why, whylen, "vring %u is stopped: the guest is renegotiating", i);
			return false;
		}
		started += st->vr[i].started;
	}
	if (started == 0) {
		snprintf(why, whylen, "no vring is running yet");
		return false;
	}
	if ((st->protocol_features & (1ull << VU_PF_STATUS)) && st->status_set &&
	    !(st->status & VIRTIO_STATUS_DRIVER_OK)) {
		snprintf(why, whylen, "the driver is not ready (status 0x%llx)",
			 (unsigned long long)st->status);
		return false;
	}
	return true;
}

/* Guest address (frontend virtual address, as in SET_VRING_ADDR) -> keeper pointer. The
 * frontend chooses every number here: the range test must not wrap, and a region may reach
 * past the end of its file (the mapping then exists, but reading there raises SIGBUS), so the
 * bytes must lie within the file as it is now. */
static const void *
guest_ptr(const struct kp_state *st, uint64_t uaddr, size_t len)
{
	for (uint32_t i = 0; i < st->mem.nregions; i++) {
		const struct vu_region *r = &st->mem.regions[i];
		struct stat sb;
		uint64_t off;

		if (st->maps[i] == NULL || uaddr < r->userspace_addr || r->memory_size < len ||
		    uaddr - r->userspace_addr > r->memory_size - len)
			continue;
		off = r->mmap_offset + (uaddr - r->userspace_addr); /* < mmap_offset + memory_size */
		if (fstat(st->mem_fds[i], &sb) != 0 ||
		    (S_ISREG(sb.st_mode) && (sb.st_size < 0 || off + len > (uint64_t)sb.st_size)))
			continue;
		return (const uint8_t *)st->maps[i] + off;
	}
	return NULL;
}

int
kp_state_used_idx(const struct kp_state *st, uint32_t ring, uint16_t *idx)
{
	const volatile uint16_t *used;

	if (ring >= st->nvrings || !st->vr[ring].addr_set)
		return -ENOENT;
	if (kp_state_packed(st))
		return -ENOTSUP;
	/* struct vring_used { le16 flags; le16 idx; ... } */
	used = guest_ptr(st, st->vr[ring].addr.used_user_addr, 4);
	if (used == NULL)
		return -EFAULT;
	*idx = used[1];
	return 0;
}

/* Send a no-payload, u64 or vring-state message. */
static int
emit(int (*send)(void *, struct vu_msg *), void *arg, uint32_t req, uint64_t v)
{
	struct vu_msg m;

	vu_msg_u64(&m, req, v);
	if (req == VU_SET_OWNER)
		m.size = 0;
	return send(arg, &m);
}

static int
emit_state(int (*send)(void *, struct vu_msg *), void *arg, uint32_t req, uint32_t idx,
	   uint32_t num)
{
	struct vu_msg m;

	vu_msg_state(&m, req, idx, num);
	return send(arg, &m);
}

static int
emit_ring_fd(const struct kp_vring *vr, uint32_t i, uint32_t req, int fd, bool nofd,
	     int (*send)(void *, struct vu_msg *), void *arg)
{
	struct vu_msg m;

	vu_msg_u64(&m, req, i | (nofd || fd < 0 ? VU_VRING_NOFD_MASK : 0));
	if (!nofd && fd >= 0) {
		m.fds[0] = fd;
		m.nfds = 1;
	}
	(void)vr;
	return send(arg, &m);
}

/* Would a kick sent now start the ring? Without protocol features a kick enables the ring,
 * so it must wait for the start stage; with them, the enable bit gates it. */
static bool
kick_starts_ring(const struct kp_state *st)
{
	return !(st->features & (1ull << VU_F_PROTOCOL_FEATURES));
}

static int
replay_rings(const struct kp_state *st, int (*send)(void *, struct vu_msg *), void *arg)
{
	struct vu_msg m;
	int rc;

	for (uint32_t i = 0; i < st->nvrings; i++) {
		const struct kp_vring *vr = &st->vr[i];

		if (!vr->started)
			continue;
		if (vr->num_set && (rc = emit_state(send, arg, VU_SET_VRING_NUM, i, vr->num)) != 0)
			return rc;
		if (vr->addr_set) {
			vu_msg_init(&m, VU_SET_VRING_ADDR, sizeof(struct vu_vring_addr));
			m.p.addr = vr->addr;
			if ((rc = send(arg, &m)) != 0)
				return rc;
		}
		if (vr->call_set &&
		    (rc = emit_ring_fd(vr, i, VU_SET_VRING_CALL, vr->call, vr->call_nofd, send, arg)))
			return rc;
		if (vr->err_set &&
		    (rc = emit_ring_fd(vr, i, VU_SET_VRING_ERR, vr->err, false, send, arg)))
			return rc;
		if (!kick_starts_ring(st) && vr->kick_set &&
		    (rc = emit_ring_fd(vr, i, VU_SET_VRING_KICK, vr->kick, vr->kick_nofd, send, arg)))
			return rc;
	}
	/* with STATUS, DRIVER_OK is the last word: hold it back until the start stage */
	if (st->status_set && (st->protocol_features & (1ull << VU_PF_STATUS)))
		return emit(send, arg, VU_SET_STATUS,
			    st->status & ~(uint64_t)VIRTIO_STATUS_DRIVER_OK);
	return 0;
}

static int
replay_preload(const struct kp_state *st, int (*send)(void *, struct vu_msg *), void *arg)
{
	struct vu_msg m;
	int rc;

	if ((st->pf_set && (rc = emit(send, arg, VU_SET_PROTOCOL_FEATURES, st->protocol_features))) ||
	    (st->owner && (rc = emit(send, arg, VU_SET_OWNER, 0))) ||
	    (st->features_set && (rc = emit(send, arg, VU_SET_FEATURES, st->features))) ||
	    (st->mtu_set && (rc = emit(send, arg, VU_NET_SET_MTU, st->mtu))))
		return rc;
	if (st->mem_set) {
		vu_msg_init(&m, VU_SET_MEM_TABLE, 8 + st->mem.nregions * sizeof(struct vu_region));
		m.p.mem = st->mem;
		m.nfds = (int)st->mem.nregions;
		memcpy(m.fds, st->mem_fds, sizeof(int) * st->mem.nregions);
		if ((rc = send(arg, &m)) != 0)
			return rc;
	}
	return replay_rings(st, send, arg);
}

static int
replay_start(const struct kp_state *st, const uint32_t *bases, int (*send)(void *, struct vu_msg *),
	     void *arg)
{
	int rc;

	for (uint32_t i = 0; i < st->nvrings; i++) {
		const struct kp_vring *vr = &st->vr[i];

		if (!vr->started)
			continue;
		if ((rc = emit_state(send, arg, VU_SET_VRING_BASE, i, bases[i])) != 0)
			return rc;
		if (kick_starts_ring(st) && vr->kick_set &&
		    (rc = emit_ring_fd(vr, i, VU_SET_VRING_KICK, vr->kick, vr->kick_nofd, send, arg)))
			return rc;
	}
	if (!kick_starts_ring(st)) {
		for (uint32_t i = 0; i < st->nvrings; i++) {
			if (!st->vr[i].started)
				continue;
			if ((rc = emit_state(send, arg, VU_SET_VRING_ENABLE, i, st->vr[i].enabled)))
				return rc;
		}
	}
	if (st->status_set && (st->protocol_features & (1ull << VU_PF_STATUS)))
		return emit(send, arg, VU_SET_STATUS, st->status);
	return 0;
}

int
kp_state_replay(const struct kp_state *st, enum kp_stage stage, const uint32_t *bases,
		int (*send)(void *arg, struct vu_msg *m), void *arg)
{
	switch (stage) {
	case KP_PRELOAD: return replay_preload(st, send, arg);
	case KP_RINGS: return replay_rings(st, send, arg);
	case KP_START: return replay_start(st, bases, send, arg);
	}
	return -EINVAL;
}
