/* SPDX-License-Identifier: Apache-2.0
 * The uplink: the generation's one port towards the fabric ("the VF"). In the lab it is
 * net_af_packet on a veth; in production any DPDK port. Also builds the gratuitous RARP a
 * generation sends when a VM arrives, so the fabric relearns where the VM's MAC lives.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_bus_vdev.h>
#include <rte_ethdev.h>

#include "dp.h"

#define UPLINK_RING 1024

int
dp_uplink_init(const char *iface)
{
	char name[64], args[160];
	struct rte_eth_conf conf = { 0 };
	uint16_t port;
	int rc;

	snprintf(name, sizeof(name), "net_af_packet_%s", iface);
	snprintf(args, sizeof(args), "iface=%s,qpairs=1,blocksz=4096,framesz=2048,framecnt=1024",
		 iface);
	rc = rte_vdev_init(name, args);
	if (rc != 0)
		return rc;
	rc = rte_eth_dev_get_port_by_name(name, &port);
	if (rc != 0)
		return rc;
	if ((rc = rte_eth_dev_configure(port, 1, 1, &conf)) != 0 ||
	    (rc = rte_eth_rx_queue_setup(port, 0, UPLINK_RING, rte_eth_dev_socket_id(port), NULL,
					 dp.pool)) != 0 ||
	    (rc = rte_eth_tx_queue_setup(port, 0, UPLINK_RING, rte_eth_dev_socket_id(port),
					 NULL)) != 0 ||
	    (rc = rte_eth_dev_start(port)) != 0)
		return rc;
	rte_eth_promiscuous_enable(port);
	dp.uplink_port = port;
	return 0;
}

void
dp_uplink_close(void)
{
	if (dp.uplink_port < 0)
		return;
	rte_eth_dev_stop((uint16_t)dp.uplink_port);
	rte_eth_dev_close((uint16_t)dp.uplink_port);
	dp.uplink_port = -1;
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

	if (dp.uplink_port < 0)
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
	return 0;
}
