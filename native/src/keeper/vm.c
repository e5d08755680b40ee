/* SPDX-License-Identifier: Apache-2.0
 * The VMs the keeper serves: each has a frontend-facing vhost-user socket (server mode: the
 * keeper listens at <run-dir>/vhost/<vm>.sock or a given path; client mode: the keeper
 * connects to the frontend's socket and reconnects), at most one frontend connection, and
 * the generation new connections go to (home).
 *
 * A frontend that arrives is attached to a live generation; when it goes, its connections to
 * every generation go too, and with them the session's fds (guest memory stays pinned while
 * anyone holds them, DESIGN.md §2.7).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keeper.h"

struct kp_vm *
kp_vm_find(const char *name)
{
	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use && strcmp(kp.vms[v].name, name) == 0)
			return &kp.vms[v];
	return NULL;
}

/* Stop listening for the VM: its frontend socket (removed) and the listen-mode generations'. */
static void
close_sockets(struct kp_vm *vm)
{
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		kp_blisten_close(vm, gi);
	if (vm->lfd >= 0) {
		kp_ev_del(vm->lfd);
		close(vm->lfd);
		vm->lfd = -1;
		unlink(vm->sock);
	}
}

/* Add a VM served by generation gen: check the name and socket path (unique among VMs),
 * and in server mode listen on the socket now. In client mode the relay's timer connects. */
int
kp_vm_add(const char *name, const char *sock, bool client, int gen, const uint8_t *mac,
	  struct ctl_error *err)
{
	struct kp_vm *vm = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int rc;

	if (!hl_valid_name(name))
		return ctl_fail(err, "invalid-args", "vm: '%.40s' is not a valid name", name);
	if (kp_vm_find(name) != NULL)
		return ctl_fail(err, "exists", "vm '%s' already exists", name);
	for (int v = 0; v < KP_MAX_VMS && vm == NULL; v++)
		if (!kp.vms[v].in_use)
			vm = &kp.vms[v];
	if (vm == NULL)
		return ctl_fail(err, "full", "at most %d VMs", KP_MAX_VMS);
	memset(vm, 0, sizeof(*vm));
	if (sock != NULL)
		rc = snprintf(vm->sock, sizeof(vm->sock), "%s", sock);
	else
		rc = snprintf(vm->sock, sizeof(vm->sock), "%s/vhost/%s.sock", kp.run_dir, name);
	if (rc < 0 || (size_t)rc >= sizeof(vm->sock))
		return ctl_fail(err, "invalid-args", "socket: path longer than %zu bytes",
				sizeof(vm->sock) - 1);
	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use && strcmp(kp.vms[v].sock, vm->sock) == 0)
			return ctl_fail(err, "exists", "socket '%s' is used by vm '%s'", vm->sock,
					kp.vms[v].name);
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	if (mac != NULL) {
		memcpy(vm->mac, mac, sizeof(vm->mac));
		vm->has_mac = true;
	}
	vm->client = client;
	vm->home = gen;
	vm->serving = -1;
	vm->ffd = vm->lfd = -1;
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		vm->b[gi].fd = vm->blfd[gi] = -1;
	kp_state_init(&vm->st);
	if (!client) {
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", vm->sock);
		vm->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		unlink(vm->sock);
		if (vm->lfd < 0 || bind(vm->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
		    listen(vm->lfd, 4) != 0) {
			rc = errno;
			if (vm->lfd >= 0)
				close(vm->lfd);
			return ctl_fail(err, "socket", "cannot listen on %s: %s", vm->sock,
					strerror(rc));
		}
		chmod(vm->sock, 0660);
		kp_ev_add(vm->lfd, KP_EV_LISTEN, kp_vm_index(vm), 0);
	}
	/* generations whose ports connect to the keeper get a socket for the VM now */
	for (int gi = 0; gi < KP_MAX_GENS; gi++) {
		if (!kp.gens[gi].in_use || !kp.gens[gi].listen || (rc = kp_blisten_open(vm, gi)) == 0)
			continue;
		close_sockets(vm);
		return ctl_fail(err, "socket", "cannot listen for generation '%s' in %s/vhost: %s",
				kp.gens[gi].name, kp.gens[gi].run_dir, strerror(-rc));
	}
	vm->in_use = true;
	return 0;
}

/* Remove a VM: close its session, stop listening and remove its socket file. */
int
kp_vm_del(const char *name, struct ctl_error *err)
{
	struct kp_vm *vm = kp_vm_find(name);

	if (vm == NULL)
		return ctl_fail(err, "unknown-vm", "no vm '%.40s'", name);
	kp_frontend_close(vm, "vm removed");
	close_sockets(vm);
	kp_state_clear(&vm->st);
	vm->in_use = false;
	return 0;
}

/* The generation a frontend of vm is served by when it arrives: its home, or when home is
 * gone the standby (or another live generation); -1 when none is alive. */
int
kp_frontend_gen(const struct kp_vm *vm)
{
	int gi = vm->home;

	if (gi >= 0 && kp.gens[gi].in_use && !kp.gens[gi].dead)
		return gi;
	return kp_failover_target(gi);
}

/* A frontend arrived (accepted or connected): attach it to kp_frontend_gen's generation;
 * refuse it (close fd) when no generation is alive. */
void
kp_frontend_attach(struct kp_vm *vm, int fd)
{
	int gi = kp_frontend_gen(vm);

	if (gi < 0 || kp_bconn_connect(vm, gi) != 0) {
		kp_vm_anomaly(vm, "frontend refused: no live generation to serve it");
		close(fd);
		return;
	}
	vm->ffd = fd;
	vm->serving = gi;
	vm->connects++;
	kp_state_clear(&vm->st);
	kp_ev_add(fd, KP_EV_FRONTEND, kp_vm_index(vm), 0);
	ctl_emit(kp.ctl, "session/connected",
		 json_pack("{s:s,s:s,s:I}", "vm", vm->name, "gen", kp.gens[gi].name, "t_ns",
			   (json_int_t)hl_now_ns()));
}

/* The frontend went (or is sent away): close it and the VM's connections to every
 * generation, which see the disconnect too, and drop the session's state and fds. A
 * client-mode VM reconnects after 200 ms. */
void
kp_frontend_close(struct kp_vm *vm, const char *why)
{
	if (vm->ffd < 0)
		return;
	kp_ev_del(vm->ffd);
	close(vm->ffd);
	vm->ffd = -1;
	vm->disconnects++;
	/* the generations see the disconnect too, and the session's fds (guest memory) go */
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		kp_bconn_close(vm, gi);
	kp_state_clear(&vm->st);
	vm->next_connect_ns = hl_now_ns() + KP_RECONNECT_US * 1000ull;
	ctl_emit(kp.ctl, "session/disconnected",
		 json_pack("{s:s,s:s,s:I}", "vm", vm->name, "why", why, "t_ns",
			   (json_int_t)hl_now_ns()));
}

/* The VM as session/list (detail false) and session/show (detail true) describe it: socket,
 * serving generation, counters, pre-loaded standbys, whether it can move now, and in detail
 * the negotiated state with each ring's position and the fds the keeper holds. */
json_t *
kp_vm_json(const struct kp_vm *vm, bool detail)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:s?,s:s?,s:I,s:I,s:I,s:I,s:I,s:I,s:s}",
			      "vm", vm->name, "socket", vm->sock, "mode",
			      vm->client ? "client" : "server", "connected", vm->ffd >= 0,
			      "serving", vm->serving >= 0 ? kp.gens[vm->serving].name : NULL,
			      "home", vm->home >= 0 ? kp.gens[vm->home].name : NULL,
			      "connects", (json_int_t)vm->connects,
			      "disconnects", (json_int_t)vm->disconnects,
			      "handoffs", (json_int_t)vm->handoffs,
			      "failovers", (json_int_t)vm->failovers,
			      "refused", (json_int_t)vm->refused,
			      "announces", (json_int_t)vm->announces,
			      "last_anomaly", vm->last_anomaly);
	json_t *pre = json_array();
	char why[160] = "";

	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		if (gi != vm->serving && vm->b[gi].fd >= 0 && vm->b[gi].preloaded &&
		    vm->b[gi].epoch == vm->st.epoch)
			json_array_append_new(pre, json_string(kp.gens[gi].name));
	json_object_set_new(o, "preloaded", pre);
	json_object_set_new(o, "movable", json_boolean(vm->ffd >= 0 &&
						       kp_state_movable(&vm->st, why, sizeof(why))));
	if (why[0] && vm->ffd >= 0)
		json_object_set_new(o, "not_movable_because", json_string(why));
	if (detail) {
		const struct kp_state *st = &vm->st;
		json_t *rings = json_array();
		int fds = 0;

		for (uint32_t i = 0; i < st->nvrings; i++) {
			const struct kp_vring *vr = &st->vr[i];
			uint16_t used = 0;
			bool have_used = kp_state_used_idx(st, i, &used) == 0;
			json_array_append_new(rings, json_pack(
				"{s:i,s:i,s:i,s:b,s:b,s:b,s:b,s:b,s:o}", "index", i, "num", vr->num,
				"base", vr->base, "enabled", vr->enabled, "started", vr->started,
				"stopped", vr->stopped, "kick", vr->kick >= 0, "call", vr->call >= 0,
				"used_idx", have_used ? json_integer(used) : json_null()));
			fds += (vr->kick >= 0) + (vr->call >= 0) + (vr->err >= 0);
		}
		for (int r = 0; r < VU_MAX_REGIONS; r++)
			fds += st->mem_fds[r] >= 0;
		json_object_set_new(o, "state", json_pack(
			"{s:I,s:I,s:b,s:I,s:i,s:I,s:o,s:i,s:I,s:b}",
			"features", (json_int_t)st->features,
			"protocol_features", (json_int_t)st->protocol_features,
			"packed", kp_state_packed(st), "status", (json_int_t)st->status,
			"regions", st->mem_set ? (int)st->mem.nregions : 0,
			"mtu", (json_int_t)st->mtu, "rings", rings, "fds_held", fds,
			"epoch", (json_int_t)st->epoch, "dirty_logging", st->log_set));
	}
	return o;
}
