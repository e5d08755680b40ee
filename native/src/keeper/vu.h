/* SPDX-License-Identifier: Apache-2.0
 * vhost-user messages as the keeper sees them: the wire frame (12-byte header + payload, fds by
 * SCM_RIGHTS), the request table (expected payload size, fd count, whether a reply follows),
 * a checker that refuses malformed frames before anything acts on them, and blocking-with-
 * timeout send/receive. No session logic here (see session.c).
 */
#ifndef HITLESS_KEEPER_VU_H
#define HITLESS_KEEPER_VU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vu_request {
	VU_GET_FEATURES = 1,
	VU_SET_FEATURES = 2,
	VU_SET_OWNER = 3,
	VU_RESET_OWNER = 4,
	VU_SET_MEM_TABLE = 5,
	VU_SET_LOG_BASE = 6,
	VU_SET_LOG_FD = 7,
	VU_SET_VRING_NUM = 8,
	VU_SET_VRING_ADDR = 9,
	VU_SET_VRING_BASE = 10,
	VU_GET_VRING_BASE = 11,
	VU_SET_VRING_KICK = 12,
	VU_SET_VRING_CALL = 13,
	VU_SET_VRING_ERR = 14,
	VU_GET_PROTOCOL_FEATURES = 15,
	VU_SET_PROTOCOL_FEATURES = 16,
	VU_GET_QUEUE_NUM = 17,
	VU_SET_VRING_ENABLE = 18,
	VU_SEND_RARP = 19,
	VU_NET_SET_MTU = 20,
	VU_SET_VRING_ENDIAN = 23,
	VU_SET_STATUS = 39,
	VU_GET_STATUS = 40,
	VU_REQUEST_MAX = 41,
};

#define VU_VERSION 0x1u
#define VU_FLAG_REPLY 0x4u
#define VU_FLAG_NEED_REPLY 0x8u
#define VU_HDR_SIZE 12u
#define VU_MAX_PAYLOAD 4096u
#define VU_MAX_FDS 8
#define VU_MAX_REGIONS 8
#define VU_MAX_VRINGS 32
#define VU_FRAME_MS 200 /* how long the rest of a begun frame may take */
#define VU_VRING_IDX_MASK 0xffu
#define VU_VRING_NOFD_MASK 0x100u

/* virtio / vhost feature bits the keeper reasons about */
#define VU_F_LOG_ALL 26
#define VU_F_PROTOCOL_FEATURES 30
#define VU_F_RING_PACKED 34
/* protocol feature bits */
#define VU_PF_MQ 0
#define VU_PF_LOG_SHMFD 1
#define VU_PF_RARP 2
#define VU_PF_REPLY_ACK 3
#define VU_PF_NET_MTU 4
#define VU_PF_STATUS 16
/* The only protocol features the relay offers the frontend: each is either stateless for the
 * relay or tracked in the session so it can be replayed. Everything else (backend request
 * channel, inflight tracking, host notifiers, memory slots, config space, device state, ...)
 * is masked out of GET_PROTOCOL_FEATURES replies, and so is CROSS_ENDIAN: ring endianness is
 * not replayed. */
#define VU_PF_RELAYABLE                                                                     \
	((1ull << VU_PF_MQ) | (1ull << VU_PF_LOG_SHMFD) | (1ull << VU_PF_RARP) |             \
	 (1ull << VU_PF_REPLY_ACK) | (1ull << VU_PF_NET_MTU) | (1ull << VU_PF_STATUS))

#define VIRTIO_STATUS_DRIVER_OK 4u

struct vu_vring_state {
	uint32_t index;
	uint32_t num;
};

struct vu_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc_user_addr;
	uint64_t used_user_addr;
	uint64_t avail_user_addr;
	uint64_t log_guest_addr;
};

struct vu_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t mmap_offset;
};

struct vu_memory {
	uint32_t nregions;
	uint32_t padding;
	struct vu_region regions[VU_MAX_REGIONS];
};

struct vu_log {
	uint64_t mmap_size;
	uint64_t mmap_offset;
};

struct vu_msg {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
	union {
		uint64_t u64;
		struct vu_vring_state state;
		struct vu_vring_addr addr;
		struct vu_memory mem;
		struct vu_log log;
		uint8_t raw[VU_MAX_PAYLOAD];
	} p;
	int fds[VU_MAX_FDS];
	int nfds;
};

const char *vu_request_name(uint32_t request);

/* Does a frontend request expect a reply from the backend? (GET_* always; others when the
 * frontend set need_reply and REPLY_ACK was negotiated.) */
bool vu_expects_reply(const struct vu_msg *m, uint64_t protocol_features);

/* Check a frame from a frontend (request) or a backend (reply to `request`): known request,
 * payload size, fd count, field ranges. 0, or -1 with err filled. Touches no fd. */
int vu_check_request(const struct vu_msg *m, char *err, size_t errlen);
int vu_check_reply(const struct vu_msg *m, uint32_t request, char *err, size_t errlen);

/* Receive one frame. Waits up to timeout_ms (<0: forever) for its first byte; once begun, a
 * frame must complete within VU_FRAME_MS. Returns 0, -EPIPE on EOF, -ETIMEDOUT when nothing
 * arrived, -EPROTO on a malformed or truncated frame (oversized payload, too many fds, stopped
 * mid-frame: the fds received are closed). */
int vu_recv(int fd, struct vu_msg *m, int timeout_ms);
/* Send one frame with its fds (not closed). 0 or -errno. */
int vu_send(int fd, const struct vu_msg *m);
/* Close the fds a message carries and forget them. */
void vu_close_fds(struct vu_msg *m);

/* Build simple requests. */
void vu_msg_init(struct vu_msg *m, uint32_t request, uint32_t size);
void vu_msg_u64(struct vu_msg *m, uint32_t request, uint64_t v);
void vu_msg_state(struct vu_msg *m, uint32_t request, uint32_t index, uint32_t num);

#endif
