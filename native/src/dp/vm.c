/* SPDX-License-Identifier: Apache-2.0
 * VM ports: one rte_vhost socket per VM, server mode (<run-dir>/vhost/<vm>.sock, the keeper or
 * a frontend connects) or client mode (we connect to a given socket and reconnect).
 *
 * Stopping a VM (destroy_device: the frontend's GET_VRING_BASE, a disconnect, or vm/del) drains
 * first: the loop stops taking packets from the guest, delivers what it already holds for it,
 * and only then is the device released. A packet held between dequeue and enqueue when the
 * stop arrives is otherwise lost (DESIGN.md §2.9).
 *
 * The VMs' control commands are here too: vm/add, vm/del, vm/list, vm/announce, and the
 * fault injection debug/stall.
 */
#define _GNU_SOURCE /* pthread_getaffinity_np, CPU_ISSET */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/virtio_net.h>
#include <rte_lcore.h>
#include <rte_vhost.h>

#include "dp.h"

/* Offloads a switch that forwards frames as they are cannot honour (no segmentation here). */
#define DP_VHOST_DISABLED_FEATURES                                                          \
	((1ULL << VIRTIO_NET_F_HOST_TSO4) | (1ULL << VIRTIO_NET_F_HOST_TSO6) |               \
	 (1ULL << VIRTIO_NET_F_HOST_ECN) | (1ULL << VIRTIO_NET_F_HOST_UFO) |                 \
	 (1ULL << VIRTIO_NET_F_GUEST_TSO4) | (1ULL << VIRTIO_NET_F_GUEST_TSO6) |             \
	 (1ULL << VIRTIO_NET_F_GUEST_ECN) | (1ULL << VIRTIO_NET_F_GUEST_UFO) |               \
	 (1ULL << VIRTIO_NET_F_CSUM) | (1ULL << VIRTIO_NET_F_GUEST_CSUM))

/* Buffers the guest has posted on its receive ring (queue pair 0) that the backend has not
 * used yet: room for frames to it. (rte_vhost_rx_queue_count counts the other direction.) */
static uint32_t
guest_rx_room(int vid)
{
	struct rte_vhost_vring vr;
	uint16_t last_avail, last_used;
	uint64_t features = 0;

	if (rte_vhost_get_negotiated_features(vid, &features) != 0 ||
	    (features & (1ULL << 34 /* VIRTIO_F_RING_PACKED: no avail index to read */)) ||
	    rte_vhost_get_vhost_vring(vid, VIRTIO_RXQ, &vr) != 0 || vr.avail == NULL ||
	    rte_vhost_get_vring_base(vid, VIRTIO_RXQ, &last_avail, &last_used) != 0)
		return 0;
	return (uint16_t)(__atomic_load_n(&vr.avail->idx, __ATOMIC_ACQUIRE) - last_avail);
}

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

/* rte_vhost has a VM's device ready to run: the loop may serve it from now on, and the fabric
 * is told where its MAC lives. */
static int
new_device(int vid)
{
	char path[PATH_MAX];
	struct dp_vm *vm;

	if (rte_vhost_get_ifname(vid, path, sizeof(path)) != 0 || (vm = find_by_sock(path)) == NULL)
		return -1;
	if (rte_vhost_get_vring_num(vid) > 2 * DP_MAX_QP) {
		/* never run a device with rings nobody polls */
		fprintf(stderr, "hitless-dp: vm %s: the guest set up %u queue pairs, this generation "
			"serves at most %d: device refused\n", vm->name,
			rte_vhost_get_vring_num(vid) / 2, DP_MAX_QP);
		return -1;
	}
	/* we poll: the guest need not kick us */
	for (uint16_t q = 0; q < rte_vhost_get_vring_num(vid); q++)
		rte_vhost_enable_guest_notification(vid, q, 0);
	vm->vid = vid;
	vm->st.first_rx_ns = vm->st.first_tx_ns = 0;
	vm->connected_ns = hl_now_ns();
	vm->connects++;
	__atomic_store_n(&vm->draining, false, __ATOMIC_RELEASE);
	/* frames for it may still be on their way round the peer link: fence before it is ready,
	 * so no direct frame can overtake them (loop.c) */
	__atomic_store_n(&vm->fence_req, true, __ATOMIC_RELEASE);
	/* ready before no longer arriving: the loop must never see the VM as neither, or a frame
	 * for it that came back over the peer link would be dropped (loop.c to_vm) */
	__atomic_store_n(&vm->ready, true, __ATOMIC_RELEASE);
	__atomic_store_n(&vm->arriving_vid, -1, __ATOMIC_RELEASE);
	dp_wake(); /* the loop may be in its deep sleep: it serves a VM now */
	ctl_emit(dp.ctl, "vm/connected",
		 json_pack("{s:s,s:I,s:i}", "vm", vm->name, "t_ns", (json_int_t)vm->connected_ns,
			   "vid", vid));
	dp_announce(vm);
	return 0;
}

#define VHOST_USER_SET_MEM_TABLE 5 /* the vhost-user message number (the spec) */

/* DPDK's vhost message thread handles a switch's messages (and waits for the drain):
 * real-time while it handles messages, so a busy neighbour on its core does not hold the
 * switch off; normal while rte_vhost tears a connection down or takes a new memory table (it
 * unmaps the guest's memory then: ~85 ms for a 4 GB guest whose pages are mapped, which at real-time priority would keep
 * everything else off that core). Only where it runs beside the packet loop, not on its CPU:
 * it takes ring locks the loop holds, and a real-time thread spinning on one would keep a
 * normal lock holder off its own CPU. (Not the control thread: DPDK's thread creation, which
 * it triggers, waits in a way a real-time creator starves.) */
static void
vhost_thread_rt(bool on)
{
	static __thread int apart = -1; /* unknown */
	static __thread bool rt;

	if (apart < 0) {
		rte_cpuset_t loop = rte_lcore_cpuset(rte_get_main_lcore()), mine;

		apart = pthread_getaffinity_np(pthread_self(), sizeof(mine), &mine) == 0;
		for (int c = 0; apart && c < CPU_SETSIZE; c++)
			apart = !(CPU_ISSET(c, &loop) && CPU_ISSET(c, &mine));
	}
	if (!apart || on == rt || dp.rt_prio == 0)
		return;
	if (on)
		rt = hl_rt_self("hitless-dp", dp.rt_prio) == 0;
	else
		rt = pthread_setschedparam(pthread_self(), SCHED_OTHER, &(struct sched_param){ 0 }) != 0;
}

static enum rte_vhost_msg_result
before_message(int vid, void *msg)
{
	(void)vid;
	/* a new memory table unmaps the old one (its mapped pages: prefault.c), and comes with a
	 * pre-load, never inside a switch: at normal priority */
	vhost_thread_rt(*(const uint32_t *)msg != VHOST_USER_SET_MEM_TABLE);
	return RTE_VHOST_MSG_RESULT_NOT_HANDLED;
}

static enum rte_vhost_msg_result
after_message(int vid, void *msg)
{
	/* the message's first field is its request number (rte_vhost passes the message) */
	if (*(const uint32_t *)msg == VHOST_USER_SET_MEM_TABLE)
		dp_prefault_table(vid); /* its guest memory is mapped ahead of the switch */
	return RTE_VHOST_MSG_RESULT_NOT_HANDLED;
}

static const struct rte_vhost_user_extern_ops message_hooks = {
	.pre_msg_handle = before_message,
	.post_msg_handle = after_message,
};

/* A connection arrived for a VM: until its device starts, the VM is on its way here. */
static int
new_connection(int vid)
{
	char path[PATH_MAX];
	struct dp_vm *vm;

	/* (in client mode this runs on the control thread: its priority is left alone; the
	 * hooks set the vhost thread's for each message) */
	if (rte_vhost_extern_callback_register(vid, &message_hooks, NULL) != 0)
		fprintf(stderr, "hitless-dp: vhost device %d: no message hooks (guest memory will not "
			"be mapped ahead)\n", vid);
	if (rte_vhost_get_ifname(vid, path, sizeof(path)) == 0 && (vm = find_by_sock(path)) != NULL) {
		__atomic_store_n(&vm->arriving_vid, vid, __ATOMIC_RELEASE);
		dp_wake(); /* frames for it may come over the peer link: the loop polls again */
	}
	return 0;
}

static void
destroy_connection(int vid)
{
	vhost_thread_rt(false); /* rte_vhost unmaps its memory next (above) */
	for (int s = 0; s < DP_MAX_VMS; s++) {
		int expect = vid;
		__atomic_compare_exchange_n(&dp.vms[s].arriving_vid, &expect, -1, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
	}
}

/* rte_vhost stops a VM's device: wait (bounded) until the loop has delivered what it holds for
 * the guest and let go of the VM, then release it (see the top of this file). */
static void
destroy_device(int vid)
{
	struct dp_vm *vm = find_by_vid(vid);
	uint64_t t0 = hl_now_ns(), epoch0 = __atomic_load_n(&dp.epoch, __ATOMIC_ACQUIRE), took_ms;
	bool drained = false, rt;
	uint16_t dropped, held0;
	uint32_t free0;

	if (vm == NULL)
		return;
	hl_tight_timer_slack(); /* this waits in the break: short naps must stay short */
	/* for the log line of a slow drain: what there was to deliver, and room for it */
	held0 = __atomic_load_n(&vm->pend_n, __ATOMIC_RELAXED);
	free0 = guest_rx_room(vid);
	vm->drain_deadline_ns = t0 + (uint64_t)dp.retry_us * 1000;
	__atomic_store_n(&vm->drained, false, __ATOMIC_RELEASE);
	__atomic_store_n(&vm->draining, true, __ATOMIC_RELEASE);
	dp_wake();
	/* the loop delivers what it holds for the guest, then lets the VM go (loop.c) */
	rt = hl_rt_thread();
	/* the break waits for this drain: a real-time caller lends the loop its priority for it, so
	 * a busy neighbour on the loop's CPU does not hold the drain off for a scheduler slice */
	if (rt) {
		struct sched_param sp = { .sched_priority = (int)dp.rt_prio };

		pthread_setschedparam(dp.loop_thread, SCHED_FIFO, &sp);
	}
	while (__atomic_load_n(&dp.loop_running, __ATOMIC_ACQUIRE) &&
	       !(drained = __atomic_load_n(&vm->drained, __ATOMIC_ACQUIRE)) &&
	       hl_now_ns() < vm->drain_deadline_ns + 1000000000ull) {
		/* a real-time thread's yield lets no normal thread run: it naps instead (the loop
		 * may share its core) */
		if (rt)
			hl_sleep_ns(2000);
		else
			sched_yield();
	}
	if (rt) {
		struct sched_param sp = { .sched_priority = 0 };

		pthread_setschedparam(dp.loop_thread, SCHED_OTHER, &sp);
	}
	dropped = 0;
	if (!drained) { /* the loop is not running (shutdown) or stuck: make sure it is out */
		__atomic_store_n(&vm->ready, false, __ATOMIC_RELEASE);
		dp_quiesce(NULL);
		dropped = vm->pend_n + vm->fence_n;
		vm->st.drop_ring_full += dropped;
		dp_frames_out(dropped);
		rte_pktmbuf_free_bulk(vm->pend, vm->pend_n);
		rte_pktmbuf_free_bulk(vm->fence_q, vm->fence_n);
		vm->pend_n = 0;
		vm->fence_n = 0;
		vm->fencing = false;
	}
	/* the device's rings are gone: a next device of the VM (which may get the same vid) starts
	 * with none running, whatever rte_vhost did or did not report for these (vring_state_changed) */
	{
		int expect = vid;

		if (__atomic_compare_exchange_n(&vm->qvid, &expect, -1, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE)) {
			__atomic_store_n(&vm->rxq_ready, 0, __ATOMIC_RELEASE);
			__atomic_store_n(&vm->txq_ready, 0, __ATOMIC_RELEASE);
		}
	}
	took_ms = (hl_now_ns() - t0) / 1000000;
	if (took_ms >= DP_SLOW_DRAIN_MS || !drained)
		fprintf(stderr, "hitless-dp: vm %s: letting go of the device took %llu ms (%s): %u frames "
			"held for the guest then, its receive ring had %u free slots then and %u now, "
			"the packet loop ran %llu iterations meanwhile, %u frames dropped\n",
			vm->name, (unsigned long long)took_ms,
			drained ? "drained" : "the loop did not answer", held0, free0,
			guest_rx_room(vid),
			(unsigned long long)(__atomic_load_n(&dp.epoch, __ATOMIC_ACQUIRE) - epoch0),
			dropped);
	vm->vid = -1;
	vm->disconnected_ns = hl_now_ns();
	__atomic_store_n(&vm->draining, false, __ATOMIC_RELEASE);
	ctl_emit(dp.ctl, "vm/disconnected",
		 json_pack("{s:s,s:I,s:I,s:b,s:i}", "vm", vm->name, "t_ns",
			   (json_int_t)vm->disconnected_ns, "drain_ns",
			   (json_int_t)(vm->disconnected_ns - t0), "drained", drained, "dropped",
			   dropped));
}

/* A ring of a VM's device started or stopped (rte_vhost calls this whenever one becomes ready
 * or not, before new_device for the first ones). The loop serves the rings marked here: every
 * transmit ring running is polled, and frames for the guest go to its running receive rings. */
static int
vring_state_changed(int vid, uint16_t queue_id, int enable)
{
	char path[PATH_MAX];
	struct dp_vm *vm;
	uint32_t *mask, bit;

	if (rte_vhost_get_ifname(vid, path, sizeof(path)) != 0 || (vm = find_by_sock(path)) == NULL)
		return 0;
	if (queue_id >= 2 * DP_MAX_QP)
		return 0; /* new_device refuses such a device */
	if (__atomic_load_n(&vm->qvid, __ATOMIC_ACQUIRE) != vid) {
		if (!enable)
			return 0; /* a ring of an older device of this VM: not what the loop serves */
		/* a new device of this VM: its rings replace the old one's */
		__atomic_store_n(&vm->rxq_ready, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&vm->txq_ready, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&vm->qvid, vid, __ATOMIC_RELEASE);
	}
	mask = queue_id % 2 == VIRTIO_RXQ ? &vm->rxq_ready : &vm->txq_ready;
	bit = 1u << (queue_id / 2);
	if (enable)
		__atomic_fetch_or(mask, bit, __ATOMIC_ACQ_REL);
	else
		__atomic_fetch_and(mask, ~bit, __ATOMIC_ACQ_REL);
	return 0;
}

static const struct rte_vhost_device_ops vhost_ops = {
	.new_device = new_device,
	.destroy_device = destroy_device,
	.vring_state_changed = vring_state_changed,
	.new_connection = new_connection,
	.destroy_connection = destroy_connection,
};

/* Add a VM: check name, MAC (unicast, not another VM's) and socket, put its MAC in the FDB,
 * then register and start its vhost socket; a failure on the way undoes the FDB entry. */
static int
vm_add(const char *name, const struct rte_ether_addr *mac, const char *sock, bool client,
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
	vm->qvid = -1;
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
	dp_frames_out(vm->pend_n + vm->fence_n);
	rte_pktmbuf_free_bulk(vm->pend, vm->pend_n);
	rte_pktmbuf_free_bulk(vm->fence_q, vm->fence_n);
	vm->pend_n = 0;
	vm->fence_n = 0;
	vm->fencing = false;
	if (!vm->client)
		unlink(vm->sock);
	ctl_emit(dp.ctl, "vm/removed", json_pack("{s:s}", "vm", vm->name));
}

static int
vm_del(const char *name, struct ctl_error *err)
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

struct dp_vm *
dp_vm_arg(json_t *args, struct ctl_error *err)
{
	const char *name = json_string_value(json_object_get(args, "vm"));
	struct dp_vm *vm = dp_vm_find(name);

	if (vm == NULL)
		ctl_fail(err, "unknown-vm", "no vm '%.40s' in this generation", name);
	return vm;
}

static const struct ctl_arg vm_add_args[] = {
	{ "vm", CTL_T_STRING, true },
	{ "mac", CTL_T_STRING, true },
	{ "socket", CTL_T_STRING, false },
	{ "client", CTL_T_BOOL, false },
	{ NULL },
};

/* vm/add: the reply names the socket the VM is served on and its port index. */
static int
cmd_vm_add(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	const char *name = json_string_value(json_object_get(args, "vm"));
	const char *smac = json_string_value(json_object_get(args, "mac"));
	json_t *sock = json_object_get(args, "socket");
	bool client = json_is_true(json_object_get(args, "client"));
	struct rte_ether_addr mac;
	struct dp_vm *vm;

	if (rte_ether_unformat_addr(smac, &mac) != 0)
		return ctl_fail(err, "invalid-args", "mac: '%.32s' is not a MAC address", smac);
	if (vm_add(name, &mac, sock ? json_string_value(sock) : NULL, client, err) != 0)
		return -1;
	vm = dp_vm_find(name);
	*result = json_pack("{s:s,s:s,s:s,s:i}", "vm", vm->name, "socket", vm->sock, "mode",
			    client ? "client" : "server", "port", dp_vm_port(vm));
	return 0;
}

static const struct ctl_arg vm_only_args[] = {
	{ "vm", CTL_T_STRING, true },
	{ NULL },
};

static int
cmd_vm_del(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	return vm_del(json_string_value(json_object_get(args, "vm")), err);
}

/* vm/list: every configured VM, whether a frontend is connected, and since when. */
static int
cmd_vm_list(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	json_t *list = json_array();

	for (int s = 0; s < DP_MAX_VMS; s++) {
		const struct dp_vm *vm = &dp.vms[s];
		char mac[RTE_ETHER_ADDR_FMT_SIZE];

		if (!__atomic_load_n(&vm->in_use, __ATOMIC_ACQUIRE))
			continue;
		dp_format_mac(mac, &vm->mac);
		json_array_append_new(list, json_pack(
			"{s:s,s:s,s:s,s:s,s:b,s:i,s:I,s:I}", "vm", vm->name, "mac", mac,
			"socket", vm->sock, "mode", vm->client ? "client" : "server",
			"connected", __atomic_load_n(&vm->ready, __ATOMIC_ACQUIRE),
			"port", dp_vm_port(vm), "connects", (json_int_t)vm->connects,
			"connected_ns", (json_int_t)vm->connected_ns));
	}
	*result = json_pack("{s:o}", "vms", list);
	return 0;
}

/* vm/announce: queue a RARP with the VM's MAC for the uplink (the loop sends it). */
static int
cmd_vm_announce(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	struct dp_vm *vm = dp_vm_arg(args, err);
	int rc;

	if (vm == NULL)
		return -1;
	rc = dp_announce(vm);
	if (rc == -ENODEV)
		return ctl_fail(err, "no-uplink", "this generation has no uplink");
	if (rc != 0)
		return ctl_fail(err, "busy", "announcement not queued (%s)", strerror(-rc));
	*result = json_pack("{s:s,s:s}", "vm", vm->name, "sent", "rarp");
	return 0;
}

static const struct ctl_arg stall_args[] = {
	{ "vm", CTL_T_STRING, true },
	{ "ms", CTL_T_INT, true, 0, 60000 },
	{ NULL },
};

/* debug/stall: until then the loop takes nothing from the VM and drops what is for it
 * (counted as stalled, loop.c), as a generation that stopped serving one VM would. */
static int
cmd_debug_stall(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	struct dp_vm *vm = dp_vm_arg(args, err);
	json_int_t ms = json_integer_value(json_object_get(args, "ms"));
	uint64_t start = hl_now_ns(), until = start + (uint64_t)ms * 1000000ull;

	if (vm == NULL)
		return -1;
	__atomic_store_n(&vm->stall_until_ns, until, __ATOMIC_RELEASE);
	*result = json_pack("{s:s,s:I,s:I}", "vm", vm->name, "start_ns", (json_int_t)start,
			    "until_ns", (json_int_t)until);
	return 0;
}

static const struct ctl_command vm_cmds[] = {
	{ "vm/add", "vm/add {vm, mac, socket?, client?}: serve a VM on <run-dir>/vhost/<vm>.sock, "
	  "or connect to socket (client: true) and keep reconnecting", vm_add_args, cmd_vm_add },
	{ "vm/del", "vm/del {vm}: disconnect (after draining) and forget a VM", vm_only_args,
	  cmd_vm_del },
	{ "vm/list", "vm/list: configured VMs and whether a frontend is connected", NULL,
	  cmd_vm_list },
	{ "vm/announce", "vm/announce {vm}: send a gratuitous RARP with the VM's MAC on the uplink",
	  vm_only_args, cmd_vm_announce },
	{ "debug/stall", "debug/stall {vm, ms}: stop serving one VM for ms (fault injection)",
	  stall_args, cmd_debug_stall },
};

int
dp_vm_ctl_register(struct ctl_registry *reg)
{
	return ctl_register_table(reg, vm_cmds, RTE_DIM(vm_cmds), NULL);
}
