/* SPDX-License-Identifier: Apache-2.0
 * The emulated VMs' NICs: one virtio_user port per --vm, and their link state as the frontend
 * sees it. Polling the link also drives virtio_user's server-mode reconnect (the PMD accepts a
 * returning backend from its link-update path), so the loop calls probe_links_poll regularly.
 */
#include <errno.h>
#include <string.h>

#include <rte_bus_vdev.h>
#include <rte_ethdev.h>

#include "probe.h"

#define PROBE_RING_SIZE 1024

/* Configure its queue pairs and start the port (at start-up and after a device reset).
 * reinit: ask for rx queue interrupts, which makes the virtio PMD re-initialise the device —
 * reset, feature negotiation, new rings — inside the same vhost-user connection. */
static int
port_setup(struct probe_ctx *ctx, struct probe_vm *vm, bool reinit)
{
	struct rte_eth_conf conf;
	int sock = rte_eth_dev_socket_id(vm->port);
	int rc;

	memset(&conf, 0, sizeof(conf));
	conf.intr_conf.rxq = reinit;
	/* server mode reconnects through the link-state interrupt: without it DPDK 22.11's
	 * disconnect handler unregisters a callback that was never registered and its interrupt
	 * thread then panics on the closed connection fd */
	conf.intr_conf.lsc = vm->server;
	rc = rte_eth_dev_configure(vm->port, vm->nq, vm->nq, &conf);
	for (uint16_t q = 0; q < vm->nq && rc == 0; q++) {
		rc = rte_eth_rx_queue_setup(vm->port, q, PROBE_RING_SIZE, sock, NULL, ctx->pool);
		if (rc == 0)
			rc = rte_eth_tx_queue_setup(vm->port, q, PROBE_RING_SIZE, sock, NULL);
	}
	if (rc == 0)
		rc = rte_eth_dev_start(vm->port);
	return rc;
}

/* A guest driver reload: the virtio device is reset and renegotiated inside the same
 * vhost-user connection (rings stopped, then new memory table, rings and eventfds), which is
 * what a backend and the keeper must follow. Called from the packet loop. */
int
probe_port_reset(struct probe_ctx *ctx, struct probe_vm *vm)
{
	int rc = rte_eth_dev_stop(vm->port);

	if (rc == 0)
		rc = port_setup(ctx, vm, true);
	vm->resets++;
	return rc;
}

/* Create, configure and start the virtio_user port of every VM. In server mode the PMD
 * blocks in accept() until the backend connects, so say so on stderr first. */
int
probe_ports_init(struct probe_ctx *ctx)
{
	char name[32], args[256], mac[RTE_ETHER_ADDR_FMT_SIZE];
	int rc;

	for (unsigned i = 0; i < ctx->n_vms; i++) {
		struct probe_vm *vm = &ctx->vms[i];

		snprintf(name, sizeof(name), "virtio_user%u", i);
		rte_ether_format_addr(mac, sizeof(mac), &vm->mac);
		snprintf(args, sizeof(args), "path=%s,queues=%u,queue_size=%u,mac=%s%s%s", vm->socket,
			 vm->nq, PROBE_RING_SIZE, mac, vm->server ? ",server=1" : "",
			 vm->packed ? ",packed_vq=1" : "");
		if (vm->server)
			fprintf(stderr, "hitless-probe: VM '%s': waiting for a vhost-user backend on %s\n",
				vm->name, vm->socket);
		rc = rte_vdev_init(name, args);
		if (rc < 0) {
			fprintf(stderr, "hitless-probe: VM '%s': cannot create a virtio_user port on %s "
				"(rc %d)%s\n", vm->name, vm->socket, rc,
				vm->server ? "" : "; is a vhost-user backend listening there?");
			return rc;
		}
		rc = rte_eth_dev_get_port_by_name(name, &vm->port);
		if (rc < 0)
			return rc;
		rc = port_setup(ctx, vm, false);
		if (rc < 0) {
			fprintf(stderr, "hitless-probe: VM '%s': port setup failed: %s\n", vm->name,
				strerror(-rc));
			return rc;
		}
		vm->port_started = true;
	}
	return 0;
}

/* Read one VM's link without waiting; true when up. */
static bool
link_is_up(const struct probe_vm *vm)
{
	struct rte_eth_link link;

	memset(&link, 0, sizeof(link));
	if (rte_eth_link_get_nowait(vm->port, &link) != 0)
		return false;
	return link.link_status == RTE_ETH_LINK_UP;
}

/* Start-up: wait (bounded by --connect-timeout-ms) until every VM's link is up. Returns 0,
 * -ETIMEDOUT (naming the VMs still down on stderr) or -EINTR when *quit is raised. */
int
probe_links_wait(struct probe_ctx *ctx, volatile sig_atomic_t *quit)
{
	uint64_t deadline = hl_now_ns() + ctx->cfg.connect_timeout_ns;

	for (;;) {
		unsigned up = 0;

		for (unsigned i = 0; i < ctx->n_vms; i++) {
			ctx->vms[i].link_up = link_is_up(&ctx->vms[i]);
			up += ctx->vms[i].link_up;
		}
		if (up == ctx->n_vms)
			return 0;
		if (*quit)
			return -EINTR;
		if (hl_now_ns() >= deadline)
			break;
		hl_sleep_ns(10 * 1000000ull);
	}
	for (unsigned i = 0; i < ctx->n_vms; i++)
		if (!ctx->vms[i].link_up)
			fprintf(stderr, "hitless-probe: VM '%s': link still down after %llu ms (%s)\n",
				ctx->vms[i].name,
				(unsigned long long)(ctx->cfg.connect_timeout_ns / 1000000),
				ctx->vms[i].socket);
	return -ETIMEDOUT;
}

/* Packet loop, every ~10 ms: report every link change as an event, count the downs. */
void
probe_links_poll(struct probe_ctx *ctx, uint64_t now)
{
	for (unsigned i = 0; i < ctx->n_vms; i++) {
		struct probe_vm *vm = &ctx->vms[i];
		struct probe_event ev;
		bool up;

		/* a client-mode port whose backend went away never comes back (the PMD only
		 * reconnects in server mode) and the PMD logs each poll: look once a second */
		if (!vm->server && !vm->link_up && now < vm->next_poll_ns)
			continue;
		up = link_is_up(vm);
		if (!vm->server && !up)
			vm->next_poll_ns = now + 1000000000ull;
		if (up == PROBE_GET(vm->link_up))
			continue;
		PROBE_SET(vm->link_up, up);
		if (!up)
			PROBE_ADD(vm->link_down, 1);
		memset(&ev, 0, sizeof(ev));
		ev.type = PROBE_EV_LINK;
		ev.vm = (uint16_t)i;
		ev.up = up;
		ev.t_ns = now;
		probe_event_push(ctx, &ev);
	}
}

/* Stop, close and remove every port that was created. */
void
probe_ports_close(struct probe_ctx *ctx)
{
	char name[32];

	for (unsigned i = 0; i < ctx->n_vms; i++) {
		uint16_t port;

		snprintf(name, sizeof(name), "virtio_user%u", i);
		if (rte_eth_dev_get_port_by_name(name, &port) != 0)
			continue;
		if (ctx->vms[i].port_started)
			rte_eth_dev_stop(port);
		rte_eth_dev_close(port);
		rte_vdev_uninit(name);
	}
}
