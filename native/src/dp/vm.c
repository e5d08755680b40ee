/* SPDX-License-Identifier: Apache-2.0
 * VM ports: one rte_vhost socket per VM, server mode (<run-dir>/vhost/<vm>.sock, the keeper or
 * a frontend connects) or client mode (we connect to a given socket and reconnect).
 *
 * Stopping a VM (destroy_device: the frontend's GET_VRING_BASE, a disconnect, or vm/del) drains
 * first: the loop stops taking packets from the guest, delivers what it already holds for it,
 * and only then is the device released. A packet held between dequeue and enqueue when the
 * stop arrives is otherwise lost (DESIGN.md §2.9).
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/virtio_net.h>
#include <rte_vhost.h>

#include "dp.h"

/* Offloads a switch that forwards frames as they are cannot honour (no segmentation here). */
#define DP_VHOST_DISABLED_FEATURES                                                          \
	((1ULL << VIRTIO_NET_F_HOST_TSO4) | (1ULL << VIRTIO_NET_F_HOST_TSO6) |               \
	 (1ULL << VIRTIO_NET_F_HOST_ECN) | (1ULL << VIRTIO_NET_F_HOST_UFO) |                 \
	 (1ULL << VIRTIO_NET_F_GUEST_TSO4) | (1ULL << VIRTIO_NET_F_GUEST_TSO6) |             \
	 (1ULL << VIRTIO_NET_F_GUEST_ECN) | (1ULL << VIRTIO_NET_F_GUEST_UFO) |               \
	 (1ULL << VIRTIO_NET_F_CSUM) | (1ULL << VIRTIO_NET_F_GUEST_CSUM))

static struct dp_vm *
find_by_vid(int vid)
{
	for (int s = 0; s < DP_MAX_VMS; s++)
		if (__atomic_load_n(&dp.vms[s].in_use, __ATOMIC_ACQUIRE) && dp.vms[s].vid == vid)
			return &dp.vms[s];
	return NULL;
}

static struct dp_vm *
find_by_sock(const char *path)
{
	for (int s = 0; s < DP_MAX_VMS; s++)
		if (__atomic_load_n(&dp.vms[s].in_use, __ATOMIC_ACQUIRE) &&
		    strcmp(dp.vms[s].sock, path) == 0)
			return &dp.vms[s];
	return NULL;
}

struct dp_vm *
dp_vm_find(const char *name)
{
	for (int s = 0; s < DP_MAX_VMS; s++)
		if (__atomic_load_n(&dp.vms[s].in_use, __ATOMIC_ACQUIRE) &&
		    strcmp(dp.vms[s].name, name) == 0)
			return &dp.vms[s];
	return NULL;
}

static int
new_device(int vid)
{
	char path[PATH_MAX];
	struct dp_vm *vm;

	if (rte_vhost_get_ifname(vid, path, sizeof(path)) != 0 || (vm = find_by_sock(path)) == NULL)
		return -1;
	/* we poll: the guest need not kick us */
	for (uint16_t q = 0; q < rte_vhost_get_vring_num(vid); q++)
		rte_vhost_enable_guest_notification(vid, q, 0);
	vm->vid = vid;
	vm->st.first_rx_ns = vm->st.first_tx_ns = 0;
	__atomic_store_n(&vm->arriving_vid, -1, __ATOMIC_RELEASE);
	vm->connected_ns = hl_now_ns();
	vm->connects++;
	__atomic_store_n(&vm->draining, false, __ATOMIC_RELEASE);
	__atomic_store_n(&vm->ready, true, __ATOMIC_RELEASE);
	ctl_emit(dp.ctl, "vm/connected",
		 json_pack("{s:s,s:I,s:i}", "vm", vm->name, "t_ns", (json_int_t)vm->connected_ns,
			   "vid", vid));
	dp_announce(vm);
	return 0;
}

/* A connection arrived for a VM: until its device starts, the VM is on its way here. */
static int
new_connection(int vid)
{
	char path[PATH_MAX];
	struct dp_vm *vm;

	if (rte_vhost_get_ifname(vid, path, sizeof(path)) == 0 && (vm = find_by_sock(path)) != NULL)
		__atomic_store_n(&vm->arriving_vid, vid, __ATOMIC_RELEASE);
	return 0;
}

static void
destroy_connection(int vid)
{
	for (int s = 0; s < DP_MAX_VMS; s++) {
		int expect = vid;
		__atomic_compare_exchange_n(&dp.vms[s].arriving_vid, &expect, -1, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
	}
}

static void
destroy_device(int vid)
{
	struct dp_vm *vm = find_by_vid(vid);
	uint64_t t0 = hl_now_ns();
	bool drained = false;
	uint16_t dropped;

	if (vm == NULL)
		return;
	hl_tight_timer_slack(); /* this waits in the break: short naps must stay short */
	vm->drain_deadline_ns = t0 + (uint64_t)dp.retry_us * 1000;
	__atomic_store_n(&vm->drained, false, __ATOMIC_RELEASE);
	__atomic_store_n(&vm->draining, true, __ATOMIC_RELEASE);
	/* the loop delivers what it holds for the guest, then lets the VM go (loop.c) */
	while (__atomic_load_n(&dp.loop_running, __ATOMIC_ACQUIRE) &&
	       !(drained = __atomic_load_n(&vm->drained, __ATOMIC_ACQUIRE)) &&
	       hl_now_ns() < vm->drain_deadline_ns + 1000000000ull)
		sched_yield();
	dropped = 0;
	if (!drained) { /* the loop is not running (shutdown) or stuck: make sure it is out */
		__atomic_store_n(&vm->ready, false, __ATOMIC_RELEASE);
		dp_quiesce(NULL);
		dropped = vm->pend_n;
		vm->st.drop_ring_full += vm->pend_n;
		rte_pktmbuf_free_bulk(vm->pend, vm->pend_n);
		vm->pend_n = 0;
	}
	vm->vid = -1;
	vm->disconnected_ns = hl_now_ns();
	__atomic_store_n(&vm->draining, false, __ATOMIC_RELEASE);
	ctl_emit(dp.ctl, "vm/disconnected",
		 json_pack("{s:s,s:I,s:I,s:b,s:i}", "vm", vm->name, "t_ns",
			   (json_int_t)vm->disconnected_ns, "drain_ns",
			   (json_int_t)(vm->disconnected_ns - t0), "drained", drained, "dropped",
			   dropped));
}

static int
vring_state_changed(int vid, uint16_t queue_id, int enable)
{
	/* rte_vhost skips disabled rings in enqueue/dequeue; nothing to do but not block */
	(void)vid;
	(void)queue_id;
	(void)enable;
	return 0;
}

static const struct rte_vhost_device_ops vhost_ops = {
	.new_device = new_device,
	.destroy_device = destroy_device,
	.vring_state_changed = vring_state_changed,
	.new_connection = new_connection,
	.destroy_connection = destroy_connection,
};

int
dp_vm_add(const char *name, const struct rte_ether_addr *mac, const char *sock, bool client,
	  struct ctl_error *err)
{
	struct dp_vm *vm = NULL;
	char path[sizeof(vm->sock)];
	struct hitless_fwd_entry old;
	int rc;

	if (!hl_valid_name(name))
		return ctl_fail(err, "invalid-args",
				"vm: '%.40s' is not a valid name (1-32 of A-Z a-z 0-9 _ . -)", name);
	if (strcmp(name, "uplink") == 0)
		return ctl_fail(err, "invalid-args", "vm: 'uplink' names the uplink port");
	if (!rte_is_unicast_ether_addr(mac) || rte_is_zero_ether_addr(mac))
		return ctl_fail(err, "invalid-args", "mac: must be a unicast, non-zero address");
	if (dp_vm_find(name) != NULL)
		return ctl_fail(err, "exists", "vm '%s' already exists", name);
	if (dp_fdb_lookup(dp.fdb, mac, &old) == 0 && old.kind == FWD_KIND_VM)
		return ctl_fail(err, "exists", "mac is already used by vm '%s'",
				dp_port_name(old.port, NULL));
	if (client && sock == NULL)
		return ctl_fail(err, "invalid-args", "socket: required in client mode");
	if (sock != NULL)
		rc = snprintf(path, sizeof(path), "%s", sock);
	else
		rc = snprintf(path, sizeof(path), "%s/vhost/%s.sock", dp.run_dir, name);
	if (rc < 0 || (size_t)rc >= sizeof(path))
		return ctl_fail(err, "invalid-args", "socket: path longer than %zu bytes",
				sizeof(path) - 1);
	if (find_by_sock(path) != NULL)
		return ctl_fail(err, "exists", "socket '%s' is already in use", path);
	for (int s = 0; s < DP_MAX_VMS && vm == NULL; s++)
		if (!__atomic_load_n(&dp.vms[s].in_use, __ATOMIC_ACQUIRE))
			vm = &dp.vms[s];
	if (vm == NULL)
		return ctl_fail(err, "full", "this generation serves at most %d VMs", DP_MAX_VMS);

	memset(vm, 0, sizeof(*vm));
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	vm->mac = *mac;
	memcpy(vm->sock, path, sizeof(path));
	vm->client = client;
	vm->vid = -1;
	vm->arriving_vid = -1;
	vm->added_ns = hl_now_ns();
	rc = dp_fdb_set(dp.fdb, mac, dp_vm_port(vm), FWD_KIND_VM);
	if (rc < 0)
		return ctl_fail(err, "table-full", "cannot add the VM's MAC to the FDB (%d)", rc);
	__atomic_store_n(&vm->in_use, true, __ATOMIC_RELEASE);

	if (!client)
		unlink(path); /* a stale socket from a crashed generation */
	if (rte_vhost_driver_register(path, client ? RTE_VHOST_USER_CLIENT : 0) != 0) {
		rc = -1;
		ctl_fail(err, "vhost", "cannot register vhost socket '%s'", path);
		goto undo_fdb;
	}
	if (rte_vhost_driver_disable_features(path, DP_VHOST_DISABLED_FEATURES) != 0 ||
	    rte_vhost_driver_callback_register(path, &vhost_ops) != 0 ||
	    rte_vhost_driver_start(path) != 0) {
		ctl_fail(err, "vhost", "cannot start vhost socket '%s'", path);
		rte_vhost_driver_unregister(path);
		goto undo_fdb;
	}
	return 0;
undo_fdb:
	__atomic_store_n(&vm->in_use, false, __ATOMIC_RELEASE);
	dp_fdb_del(dp.fdb, mac, dp_quiesce, NULL);
	return -1;
}

/* Remove a VM slot: disconnect (drains), unpublish, forget its MAC. */
static void
vm_remove(struct dp_vm *vm)
{
	rte_vhost_driver_unregister(vm->sock);
	if (vm->vid >= 0) /* unregister normally destroys the device; be sure */
		destroy_device(vm->vid);
	__atomic_store_n(&vm->in_use, false, __ATOMIC_RELEASE);
	dp_fdb_del(dp.fdb, &vm->mac, dp_quiesce, NULL);
	/* the loop no longer sees the slot: release what it held for the VM */
	rte_pktmbuf_free_bulk(vm->pend, vm->pend_n);
	vm->pend_n = 0;
	if (!vm->client)
		unlink(vm->sock);
	ctl_emit(dp.ctl, "vm/removed", json_pack("{s:s}", "vm", vm->name));
}

int
dp_vm_del(const char *name, struct ctl_error *err)
{
	struct dp_vm *vm = dp_vm_find(name);

	if (vm == NULL)
		return ctl_fail(err, "unknown-vm", "no vm '%.40s' in this generation", name);
	vm_remove(vm);
	return 0;
}

void
dp_vm_del_all(void)
{
	for (int s = 0; s < DP_MAX_VMS; s++)
		if (__atomic_load_n(&dp.vms[s].in_use, __ATOMIC_ACQUIRE))
			vm_remove(&dp.vms[s]);
}

const char *
dp_port_name(uint16_t port, void *arg)
{
	(void)arg;
	if (port == FWD_PORT_UPLINK)
		return "uplink";
	if (port >= 1 && port <= DP_MAX_VMS &&
	    __atomic_load_n(&dp.vms[port - 1].in_use, __ATOMIC_ACQUIRE))
		return dp.vms[port - 1].name;
	return NULL;
}

int
dp_port_lookup(const char *name, uint16_t *port, void *arg)
{
	struct dp_vm *vm;

	(void)arg;
	if (strcmp(name, "uplink") == 0) {
		if (dp.up.port < 0)
			return -ENOENT;
		*port = FWD_PORT_UPLINK;
		return 0;
	}
	vm = dp_vm_find(name);
	if (vm == NULL)
		return -ENOENT;
	*port = dp_vm_port(vm);
	return 0;
}
