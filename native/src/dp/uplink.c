/* SPDX-License-Identifier: Apache-2.0
 * External ports. The uplink: the generation's one port towards the fabric ("the VF"); in the
 * lab net_af_packet on a veth, in production any DPDK port. The peer link: memif to the host's
 * other generation while an upgrade has VMs on both (attached at start with --peer, or later
 * with peer/attach, and dropped with peer/detach). Also builds the gratuitous RARP a
 * generation sends when a VM arrives, so the fabric relearns where the VM's MAC lives.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_bus_vdev.h>
#include <rte_ethdev.h>

#include "dp.h"

#define EXT_RING 1024

/* Create a vdev port, one rx and one tx queue, started. */
static int
ext_init(struct dp_ext *e, const char *name, const char *args, uint16_t nq)
{
	struct rte_eth_conf conf = { 0 };
	uint16_t port;
	int rc;

	rc = rte_vdev_init(name, args);
	if (rc != 0)
		return rc;
	rc = rte_eth_dev_get_port_by_name(name, &port);
	if (rc != 0)
		return rc;
	if ((rc = rte_eth_dev_configure(port, nq, nq, &conf)) != 0)
		return rc;
	for (uint16_t q = 0; q < nq; q++)
		if ((rc = rte_eth_rx_queue_setup(port, q, EXT_RING, rte_eth_dev_socket_id(port),
						 NULL, dp.pool)) != 0 ||
		    (rc = rte_eth_tx_queue_setup(port, q, EXT_RING, rte_eth_dev_socket_id(port),
						 NULL)) != 0)
			return rc;
	if ((rc = rte_eth_dev_start(port)) != 0)
		return rc;
	rte_eth_promiscuous_enable(port);
	snprintf(e->vdev, sizeof(e->vdev), "%s", name);
	e->nq = nq;
	/* published last: the loop may be running (peer/attach) */
	__atomic_store_n(&e->port, (int)port, __ATOMIC_RELEASE);
	return 0;
}

/*
 * What the port received before it was this generation's: DPDK 22.11's af_packet opens its
 * socket for every protocol, which binds it to every interface of the namespace until its
 * bind() to ours, so its ring starts with frames from the other generation's uplink (and its
 * own outgoing ones). Forwarded, a frame for a VM the other generation serves went over the
 * peer link and reached the VM a second time. A new generation serves no VM yet: nothing it
 * received before its loop starts is its to forward.
 */
static void
discard_stale(struct dp_ext *e)
{
	struct rte_mbuf *m[DP_BURST];
	uint16_t n;

	for (int i = 0; i < 4096 / DP_BURST && (n = rte_eth_rx_burst((uint16_t)e->port, 0, m, DP_BURST)) > 0; i++) {
		e->st.stale += n;
		rte_pktmbuf_free_bulk(m, n);
	}
}

int
dp_uplink_init(const char *iface)
{
	char name[64], args[160];
	int rc;

	snprintf(name, sizeof(name), "net_af_packet_%s", iface);
	/* the kernel's receive ring is what rides out a loop that is not scheduled: 4096 frames
	 * (8 MB) hold a second of a lab fabric's traffic (1024 held 256 ms, less than the stalls
	 * a busy 2-core machine gives a process now and then: frames overflowed it, lost outside
	 * any switch) */
	snprintf(args, sizeof(args), "iface=%s,qpairs=1,blocksz=4096,framesz=2048,framecnt=4096",
		 iface);
	snprintf(dp.up.spec, sizeof(dp.up.spec), "%s", iface);
	rc = ext_init(&dp.up, name, args, 1);
	if (rc == 0)
		discard_stale(&dp.up);
	return rc;
}

/* The peer link between the two generations of a host: a memif pair over a Unix socket, the
 * older generation the server. Its link comes up when the other side connects. Queue 0 carries
 * frames for VMs the sender does not serve; queue 1 returns those the receiver does not serve
 * either (see loop.c). */
int
dp_peer_init(const char *sock, bool server)
{
	static unsigned n;
	char name[32], args[200];

	if (dp.peer.port >= 0)
		return -EEXIST;
	snprintf(name, sizeof(name), "net_memif_peer%u", n++);
	snprintf(args, sizeof(args), "role=%s,socket=%s,socket-abstract=no,id=0,zero-copy=no",
		 server ? "server" : "client", sock);
	snprintf(dp.peer.spec, sizeof(dp.peer.spec), "%s", sock);
	/* this link's counters from zero, before a frame can cross it (heartbeat.h) */
	__atomic_store_n(&dp.hb->peer_tx, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&dp.hb->peer_rx, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&dp.hb->peer_fence_ack, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&dp.hb->peer_link, hl_peer_link_id(sock), __ATOMIC_RELEASE);
	int rc = ext_init(&dp.peer, name, args, 2);

	if (rc == 0)
		dp_prefault_peer((uint16_t)dp.peer.port); /* its buffers mapped once it is up */
	return rc;
}

void
dp_ext_close(struct dp_ext *e)
{
	int port = e->port;

	if (port < 0)
		return;
	__atomic_store_n(&e->port, -1, __ATOMIC_RELEASE);
	if (e == &dp.peer)
		dp_prefault_peer_stop(); /* nothing calls into the port any more */
	dp_quiesce(NULL); /* the loop no longer polls it */
	rte_eth_dev_stop((uint16_t)port);
	rte_eth_dev_close((uint16_t)port);
	rte_vdev_uninit(e->vdev);
}

static int
peer_detach(void)
{
	if (dp.peer.port < 0)
		return -ENOENT;
	dp_ext_close(&dp.peer);
	__atomic_store_n(&dp.hb->peer_link, 0, __ATOMIC_RELEASE);
	return 0;
}

json_t *
dp_ext_json(const struct dp_ext *e)
{
	struct rte_eth_link link = { 0 };

	if (e->port < 0)
		return NULL;
	rte_eth_link_get_nowait((uint16_t)e->port, &link);
	return json_pack("{s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:I}", "spec", e->spec, "link_up",
			 link.link_status == RTE_ETH_LINK_UP,
			 "rx_pkts", (json_int_t)__atomic_load_n(&e->st.rx_pkts, __ATOMIC_RELAXED),
			 "rx_bytes", (json_int_t)__atomic_load_n(&e->st.rx_bytes, __ATOMIC_RELAXED),
			 "tx_pkts", (json_int_t)__atomic_load_n(&e->st.tx_pkts, __ATOMIC_RELAXED),
			 "tx_bytes", (json_int_t)__atomic_load_n(&e->st.tx_bytes, __ATOMIC_RELAXED),
			 "drop_tx", (json_int_t)__atomic_load_n(&e->st.drop_tx, __ATOMIC_RELAXED),
			 "drop_no_dest",
			 (json_int_t)__atomic_load_n(&e->st.drop_no_dest, __ATOMIC_RELAXED),
			 "announces", (json_int_t)__atomic_load_n(&e->st.announces, __ATOMIC_RELAXED),
			 "stale", (json_int_t)__atomic_load_n(&e->st.stale, __ATOMIC_RELAXED),
			 "fenced", e == &dp.peer && __atomic_load_n(&dp.hb->peer_fenced, __ATOMIC_ACQUIRE) != 0,
			 "mapped_ahead_bytes", e == &dp.peer ? (json_int_t)__atomic_load_n(&dp.peer_prefault_bytes, __ATOMIC_ACQUIRE) : 0);
}

/* RARP "reverse request" with the VM's MAC as sender and target, as QEMU announces a VM after
 * migration: switches on the path learn the MAC's new location from it. */
struct rarp {
	struct rte_ether_hdr eth;
	uint16_t htype, ptype;
	uint8_t hlen, plen;
	uint16_t op;
	struct rte_ether_addr sha;
	uint32_t spa;
	struct rte_ether_addr tha;
	uint32_t tpa;
} __rte_packed __rte_aligned(2);

int
dp_announce(const struct dp_vm *vm)
{
	struct rte_mbuf *m;
	struct rarp *r;
	uint16_t len = RTE_ETHER_MIN_LEN - RTE_ETHER_CRC_LEN;

	if (dp.up.port < 0)
		return -ENODEV;
	m = rte_pktmbuf_alloc(dp.pool);
	if (m == NULL)
		return -ENOMEM;
	r = (struct rarp *)rte_pktmbuf_append(m, len);
	if (r == NULL) {
		rte_pktmbuf_free(m);
		return -ENOMEM;
	}
	memset(r, 0, len);
	memset(&r->eth.dst_addr, 0xff, RTE_ETHER_ADDR_LEN);
	r->eth.src_addr = vm->mac;
	r->eth.ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_RARP);
	r->htype = rte_cpu_to_be_16(1);
	r->ptype = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	r->hlen = RTE_ETHER_ADDR_LEN;
	r->plen = 4;
	r->op = rte_cpu_to_be_16(3);
	r->sha = vm->mac;
	r->tha = vm->mac;
	if (rte_ring_enqueue(dp.announce_q, m) != 0) {
		rte_pktmbuf_free(m);
		return -ENOBUFS;
	}
	dp_wake();
	return 0;
}

static const struct ctl_arg peer_args[] = {
	{ "socket", CTL_T_STRING, true },
	{ "server", CTL_T_BOOL, true },
	{ NULL },
};

/* peer/attach: the memif link to the other generation, when none is attached yet. */
static int
cmd_peer_attach(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	const char *sock = json_string_value(json_object_get(args, "socket"));
	bool server = json_is_true(json_object_get(args, "server"));
	int rc;

	if (strlen(sock) == 0 || strlen(sock) >= sizeof(dp.peer_sock))
		return ctl_fail(err, "invalid-args", "socket: 1..%zu bytes", sizeof(dp.peer_sock) - 1);
	rc = dp_peer_init(sock, server);
	if (rc == 0) /* a new peer: the fence on the dead one's link is lifted */
		__atomic_store_n(&dp.hb->peer_fenced, 0, __ATOMIC_RELEASE);
	if (rc == -EEXIST)
		return ctl_fail(err, "exists", "a peer link is already attached (%s)", dp.peer.spec);
	if (rc != 0)
		return ctl_fail(err, "peer", "cannot attach the peer link on %s: %s", sock,
				strerror(rc < 0 ? -rc : rc));
	*result = dp_ext_json(&dp.peer);
	return 0;
}

static int
cmd_peer_detach(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	if (peer_detach() != 0)
		return ctl_fail(err, "no-peer", "no peer link is attached");
	return 0;
}

static const struct ctl_command peer_cmds[] = {
	{ "peer/attach", "peer/attach {socket, server}: memif link to the host's other generation "
	  "(the older one is the server)", peer_args, cmd_peer_attach },
	{ "peer/detach", "peer/detach: drop the peer link", NULL, cmd_peer_detach },
};

int
dp_peer_ctl_register(struct ctl_registry *reg)
{
	return ctl_register_table(reg, peer_cmds, RTE_DIM(peer_cmds), NULL);
}
