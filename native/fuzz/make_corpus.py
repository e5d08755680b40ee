#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Write the seed corpus of fuzz_vu (native/fuzz/corpus/vu/). Frame format: see fuzz_vu.c.

Usage: native/fuzz/make_corpus.py   (rewrites the seed files; the fuzzer never writes there)
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "vu")

(GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE, SET_LOG_BASE, SET_LOG_FD,
 SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL,
 SET_VRING_ERR, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE,
 SEND_RARP, NET_SET_MTU) = range(1, 21)
SET_VRING_ENDIAN, SET_STATUS, GET_STATUS = 23, 39, 40

VERSION, REPLY, NEED_REPLY = 0x1, 0x4, 0x8
NOFD = 0x100
F_PROTOCOL, F_VERSION_1, F_RING_PACKED, F_LOG_ALL = 1 << 30, 1 << 32, 1 << 34, 1 << 26
PF_MQ, PF_LOG_SHMFD, PF_REPLY_ACK, PF_STATUS = 1 << 0, 1 << 1, 1 << 3, 1 << 16

UA = 0x7F0000000000          # the frontend's address of guest memory
MEM = 0x4000                 # the harness's guest memory file: four pages

# fd byte: count + 9 * k; k bit 0: eventfds, bit 1: split header, bits 2-4: replay fails at
EVENTFD, SPLIT = 1, 2


def fail_at(n):
    return n << 2


def frame(req, payload=b"", nfds=0, k=0, flags=VERSION, size=None):
    b = nfds + 9 * k
    assert 0 <= b < 255
    return bytes([b]) + struct.pack("<III", req, flags, len(payload) if size is None else size) + payload


def u64(req, v, **kw):
    return frame(req, struct.pack("<Q", v), **kw)


def state(req, index, num, **kw):
    return frame(req, struct.pack("<II", index, num), **kw)


def addr(index, desc, used, avail, flags=0, log=0, **kw):
    return frame(SET_VRING_ADDR, struct.pack("<IIQQQQ", index, flags, desc, used, avail, log), **kw)


def mem(regions, nfds=None, nregions=None, **kw):
    body = struct.pack("<II", len(regions) if nregions is None else nregions, 0)
    for gpa, size, ua, off in regions:
        body += struct.pack("<QQQQ", gpa, size, ua, off)
    return frame(SET_MEM_TABLE, body, nfds=len(regions) if nfds is None else nfds, **kw)


def ring_fd(req, index, nofd=False, k=0):
    return u64(req, index | (NOFD if nofd else 0), nfds=0 if nofd else 1, k=k)


def ring(index, num=256, base=0, used=None, k=0):
    used = UA + 0x2000 + index * 0x800 if used is None else used
    return (state(SET_VRING_NUM, index, num) + state(SET_VRING_BASE, index, base) +
            addr(index, UA + index * 0x1000, used, UA + 0x1000 + index * 0x400) +
            ring_fd(SET_VRING_KICK, index, k=k) + state(SET_VRING_ENABLE, index, 1))


def init(features=F_VERSION_1 | F_PROTOCOL, pf=PF_MQ | PF_REPLY_ACK | PF_STATUS, rings=2,
         region=(0, MEM, UA, 0), k=0):
    """virtio_user's order: owner, features, protocol features, calls, memory, rings, status."""
    s = (frame(SET_OWNER) + frame(GET_FEATURES) + frame(GET_PROTOCOL_FEATURES) +
         u64(SET_PROTOCOL_FEATURES, pf) + frame(GET_QUEUE_NUM) + u64(SET_STATUS, 0x3))
    for i in range(rings):
        s += ring_fd(SET_VRING_CALL, i)
    s += u64(SET_FEATURES, features) + mem([region], k=k)
    for i in range(rings):
        s += ring(i, k=k)
    return s + u64(SET_STATUS, 0xF) + frame(GET_STATUS)


def stop(rings=2, positions=(17, 300)):
    s = u64(SET_STATUS, 0)
    for i in range(rings):
        s += state(GET_VRING_BASE, i, positions[i % len(positions)])
    return s


SEEDS = {
    # negotiation and start, as virtio_user does it (and a legacy one without protocol features)
    "init": init(),
    "init_legacy": init(features=F_VERSION_1, pf=0),
    "init_one_ring_nofd": (frame(SET_OWNER) + u64(SET_FEATURES, F_VERSION_1 | F_PROTOCOL) +
                           u64(SET_PROTOCOL_FEATURES, PF_REPLY_ACK) +
                           ring_fd(SET_VRING_CALL, 0, nofd=True) +
                           mem([(0, MEM, UA, 0)], flags=VERSION | NEED_REPLY) +
                           state(SET_VRING_NUM, 0, 1024) +
                           addr(0, UA, UA + 0x3000, UA + 0x2000) +
                           ring_fd(SET_VRING_KICK, 0, nofd=True)),
    # the guest resets its device: stop the rings, renegotiate with a new table, start again
    "reset": (init() + stop() + u64(SET_FEATURES, F_VERSION_1 | F_PROTOCOL) +
              mem([(0, MEM // 2, UA, 0), (MEM // 2, MEM // 2, UA + 0x100000, MEM // 2)]) +
              ring(0, base=17, used=UA + 0x100000) + ring(1, base=300) + u64(SET_STATUS, 0xF)),
    "reset_owner": init() + stop() + frame(RESET_OWNER) + init(rings=1),
    # live migration bits and the stateless requests
    "migration": (init() + u64(SET_FEATURES, F_VERSION_1 | F_PROTOCOL | F_LOG_ALL) +
                  frame(SET_LOG_BASE, struct.pack("<QQ", MEM, 0), nfds=1) +
                  frame(SET_LOG_FD, nfds=1, k=EVENTFD) + u64(SEND_RARP, 0x0200DEADBEEF) +
                  u64(NET_SET_MTU, 9000) + state(SET_VRING_ENDIAN, 0, 1) +
                  ring_fd(SET_VRING_ERR, 1, k=EVENTFD) + ring_fd(SET_VRING_ERR, 0, nofd=True)),
    "packed": init(features=F_VERSION_1 | F_PROTOCOL | F_RING_PACKED),
    # harness paths: split headers, eventfd memory (mmap refused), a replay that fails midway
    "split_headers": init(k=SPLIT),
    "eventfd_memory": init(rings=1) + mem([(0, MEM, UA, 0)], k=EVENTFD) + frame(GET_FEATURES),
    "replay_fails": init(k=fail_at(3)) + state(SET_VRING_ENABLE, 1, 0, k=fail_at(7)),
    # what a frontend should never send
    "bad_oversized": frame(SET_OWNER) + frame(SET_FEATURES, b"\0" * 8, size=0x10000),
    "bad_too_many_fds": frame(SET_OWNER) + b"\xff" + struct.pack("<III", SET_OWNER, VERSION, 0),
    "bad_truncated": init(rings=1) + frame(SET_VRING_ADDR, b"\0" * 7, size=40),
    "bad_mem": (mem([(0, MEM, UA, 0)] * 2, nregions=9) + mem([(0, 0, UA, 0)]) +
                mem([(0, 16, 2**64 - 8, 0)]) + mem([(0, MEM, UA, 2**64 - 8)]) +
                mem([(0, MEM, UA, 0)], nfds=0) + frame(SET_MEM_TABLE, b"\1\0\0\0")),
    "bad_vring": (state(SET_VRING_NUM, 32, 256) + state(SET_VRING_NUM, 0, 300) +
                  state(SET_VRING_ENABLE, 0, 2) + u64(SET_VRING_KICK, 0x1FF, nfds=1) +
                  u64(SET_VRING_CALL, 0x100, nfds=1) + u64(SET_VRING_CALL, 0x10000) +
                  addr(40, 0, 0, 0)),
    "bad_misc": (frame(99) + frame(SET_OWNER, flags=VERSION | REPLY) + frame(SET_OWNER, flags=2) +
                 u64(SET_PROTOCOL_FEATURES, 1 << 5) + frame(GET_FEATURES, b"\0" * 8) +
                 frame(SET_OWNER, nfds=2) + frame(21) + frame(0)),
    "bad_replies": (init(rings=1) + state(GET_VRING_BASE, 0, 5, flags=VERSION | 1 << 16) +
                    frame(GET_FEATURES, flags=VERSION | 1 << 17) +
                    frame(GET_STATUS, flags=VERSION | 1 << 18) +
                    frame(SET_LOG_BASE, struct.pack("<QQ", MEM, 0), nfds=1, flags=VERSION | 1 << 19)),
    # guest memory the frontend describes wrongly: past the end of its file, addresses that wrap,
    # a used ring that is not aligned
    "mem_past_eof": (init(rings=1, region=(0, 0x100000, UA, 0)) +
                     addr(0, UA, UA + 0x80000, UA + 0x1000)),
    "used_addr_wraps": (init(rings=1, region=(0, MEM, 0, 0)) + addr(0, 0, 2**64 - 2, 0x1000)),
    "used_unaligned": init(rings=1) + addr(0, UA, UA + 0x2001, UA + 0x1000),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {OUT}")


if __name__ == "__main__":
    main()
