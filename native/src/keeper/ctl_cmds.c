/* SPDX-License-Identifier: Apache-2.0
 * hitless-keeper's control commands, each registered once with usage and argument table. Every
 * handler runs under kp.lock, so it never interleaves with a relayed frontend request.
 */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "keeper.h"

#ifndef HITLESS_RELEASE
#define HITLESS_RELEASE "0.0.0"
#endif

/* A command body; every one runs under kp.lock (see locked()). */
typedef int (*kp_cmd_fn)(json_t *args, json_t **result, struct ctl_error *err);

struct kp_cmd {
	const char *name;
	const char *usage;
	const struct ctl_arg *args;
	kp_cmd_fn fn;
	/* what must happen before kp.lock is taken (a wait that must not hold the relay up) */
	void (*before)(json_t *args);
};

static const char *
str(json_t *args, const char *key)
{
	return json_string_value(json_object_get(args, key));
}

static int
gen_arg(json_t *args, const char *key, struct ctl_error *err)
{
	const char *name = str(args, key);
	int gi = kp_gen_find(name);

	if (gi < 0)
		ctl_fail(err, "unknown-gen", "no generation '%.40s' (see gen/list)", name);
	return gi;
}

static struct kp_vm *
vm_arg(json_t *args, struct ctl_error *err)
{
	struct kp_vm *vm = kp_vm_find(str(args, "vm"));

	if (vm == NULL)
		ctl_fail(err, "unknown-vm", "no vm '%.40s' (see session/list)", str(args, "vm"));
	return vm;
}

static const struct ctl_arg gen_attach_args[] = {
	{ "gen", CTL_T_STRING, true },
	{ "run_dir", CTL_T_STRING, true },
	{ "backend", CTL_T_STRING, false },
	{ NULL },
};

static int
gen_attach(json_t *args, json_t **result, struct ctl_error *err)
{
	json_t *b = json_object_get(args, "backend");
	bool listen = b != NULL && strcmp(json_string_value(b), "listen") == 0;

	if (b != NULL && !listen && strcmp(json_string_value(b), "connect") != 0)
		return ctl_fail(err, "invalid-args", "backend: 'connect' (the generation listens) "
				"or 'listen' (its ports connect to the keeper)");
	if (kp_gen_attach(str(args, "gen"), str(args, "run_dir"), listen, err) != 0)
		return -1;
	*result = kp_gen_json(kp_gen_find(str(args, "gen")));
	return 0;
}

static const struct ctl_arg gen_only_args[] = {
	{ "gen", CTL_T_STRING, true },
	{ NULL },
};

static int
gen_detach(json_t *args, json_t **result, struct ctl_error *err)
{
	return kp_gen_detach(str(args, "gen"), err);
}

static int
gen_list(json_t *args, json_t **result, struct ctl_error *err)
{
	json_t *list = json_array();

	/* a loop that started since the last command or relay event has its CPU known now */
	kp_gen_share_update();
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		if (kp.gens[gi].in_use)
			json_array_append_new(list, kp_gen_json(gi));
	*result = json_pack("{s:o}", "gens", list);
	return 0;
}

static int
standby(json_t *args, json_t **result, struct ctl_error *err)
{
	int gi = gen_arg(args, "gen", err);

	if (gi < 0)
		return -1;
	if (kp.gens[gi].dead)
		return ctl_fail(err, "target-dead", "generation '%s' is dead", kp.gens[gi].name);
	kp.standby = gi;
	*result = kp_gen_json(gi);
	return 0;
}

static const struct ctl_arg vm_add_args[] = {
	{ "vm", CTL_T_STRING, true },
	{ "gen", CTL_T_STRING, true },
	{ "socket", CTL_T_STRING, false },
	{ "client", CTL_T_BOOL, false },
	{ "mac", CTL_T_STRING, false },
	{ NULL },
};

static int
vm_add(json_t *args, json_t **result, struct ctl_error *err)
{
	json_t *sock = json_object_get(args, "socket");
	bool client = json_is_true(json_object_get(args, "client"));
	int gi = gen_arg(args, "gen", err);
	const char *mac = str(args, "mac");
	uint8_t m[6];
	char end;

	if (gi < 0)
		return -1;
	if (client && sock == NULL)
		return ctl_fail(err, "invalid-args", "socket: required in client mode");
	if (mac != NULL && sscanf(mac, "%2hhx:%2hhx:%2hhx:%2hhx:%2hhx:%2hhx%c", &m[0], &m[1], &m[2],
				  &m[3], &m[4], &m[5], &end) != 6)
		return ctl_fail(err, "invalid-args", "mac: '%.40s' is not a MAC address (aa:bb:cc:dd:ee:ff)", mac);
	if (kp_vm_add(str(args, "vm"), sock ? json_string_value(sock) : NULL, client, gi,
		      mac != NULL ? m : NULL, err) != 0)
		return -1;
	*result = kp_vm_json(kp_vm_find(str(args, "vm")), false);
	return 0;
}

static const struct ctl_arg vm_only_args[] = {
	{ "vm", CTL_T_STRING, true },
	{ NULL },
};

static int
vm_del(json_t *args, json_t **result, struct ctl_error *err)
{
	return kp_vm_del(str(args, "vm"), err);
}

static int
session_list(json_t *args, json_t **result, struct ctl_error *err)
{
	json_t *list = json_array();

	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use)
			json_array_append_new(list, kp_vm_json(&kp.vms[v], false));
	*result = json_pack("{s:o}", "sessions", list);
	return 0;
}

static int
session_show(json_t *args, json_t **result, struct ctl_error *err)
{
	struct kp_vm *vm = vm_arg(args, err);

	if (vm == NULL)
		return -1;
	*result = kp_vm_json(vm, true);
	return 0;
}

static const struct ctl_arg vm_gen_args[] = {
	{ "vm", CTL_T_STRING, true },
	{ "gen", CTL_T_STRING, true },
	{ NULL },
};

/* session/preload: refuse what a handoff would refuse too (no session, same generation, not
 * movable now), then pre-load and say how long it took, and how soon a handoff to gen would
 * go without waiting (an OVS generation's event thread is being woken: pace.c). */
static int
preload(json_t *args, json_t **result, struct ctl_error *err)
{
	struct kp_vm *vm = vm_arg(args, err);
	int gi = vm ? gen_arg(args, "gen", err) : -1;
	uint64_t t0 = hl_now_ns(), ready_in = 0;
	char why[160];

	if (gi < 0)
		return -1;
	if (vm->ffd < 0)
		return ctl_fail(err, "not-connected", "vm '%s' has no live session", vm->name);
	if (gi == vm->serving)
		return ctl_fail(err, "already-there", "vm '%s' is served by '%s'", vm->name,
				kp.gens[gi].name);
	if (!kp_state_movable(&vm->st, why, sizeof(why)))
		return ctl_fail(err, "not-movable", "vm '%s' cannot be pre-loaded now: %s", vm->name,
				why);
	if (kp_preload(vm, gi, err) != 0)
		return -1;
	/* a switch is near: wake the generation's vhost event thread now (pace.c) */
	if (kp.gens[gi].listen)
		ready_in = kp_pace_warm(gi);
	*result = json_pack("{s:s,s:s,s:I,s:I}", "vm", vm->name, "gen", kp.gens[gi].name, "took_ns",
			    (json_int_t)(hl_now_ns() - t0), "ready_in_ns", (json_int_t)ready_in);
	return 0;
}

static const struct ctl_arg handoff_args[] = {
	{ "vm", CTL_T_STRING, true },
	{ "gen", CTL_T_STRING, true },
	{ NULL },
};

static int
handoff(json_t *args, json_t **result, struct ctl_error *err)
{
	struct kp_vm *vm = vm_arg(args, err);
	int gi = vm ? gen_arg(args, "gen", err) : -1;

	if (gi < 0)
		return -1;
	if (kp_handoff(vm, gi, result, err) != 0)
		return -1;
	kp_pace_settle(gi);
	return 0;
}

/* Before a handoff to a listen-mode (OVS-DPDK) generation, outside kp.lock: its vhost event
 * thread is paced and surely awake (pace.c), so the VM's ring enable is applied at once. */
static void
handoff_before(json_t *args)
{
	uint64_t wait = 0;
	int gi;

	pthread_mutex_lock(&kp.lock);
	gi = kp_gen_find(str(args, "gen"));
	if (gi >= 0 && kp.gens[gi].listen && !kp.gens[gi].dead)
		wait = kp_pace_warm(gi);
	pthread_mutex_unlock(&kp.lock);
	if (wait > 0)
		hl_sleep_ns(wait);
}

static const struct ctl_arg pause_args[] = {
	{ "ms", CTL_T_INT, true, 0, 10000 },
	{ NULL },
};

static int
pause_next(json_t *args, json_t **result, struct ctl_error *err)
{
	kp.debug_pause_ms = (uint32_t)json_integer_value(json_object_get(args, "ms"));
	*result = json_pack("{s:i}", "ms", (int)kp.debug_pause_ms);
	return 0;
}

static const struct ctl_arg upgrade_args[] = {
	{ "binary", CTL_T_STRING, true },
	{ NULL },
};

static int
upgrade(json_t *args, json_t **result, struct ctl_error *err)
{
	return kp_upgrade(str(args, "binary"), result, err);
}

/* How many fds this process holds (/proc/self/fd, less the one reading it). */
static int
open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;
}

static int
keeper_info(json_t *args, json_t **result, struct ctl_error *err)
{
	int vms = 0, sessions = 0;

	for (int v = 0; v < KP_MAX_VMS; v++) {
		vms += kp.vms[v].in_use;
		sessions += kp.vms[v].in_use && kp.vms[v].ffd >= 0;
	}
	*result = json_pack("{s:s,s:i,s:i,s:i,s:i,s:i}", "version", HITLESS_RELEASE, "pid",
			    (int)getpid(), "state_format", kp_state_format(), "fds", open_fds(),
			    "vms", vms, "sessions", sessions);
	return 0;
}

/* The keeper's commands, one line each; registered through one locking trampoline. */
static const struct kp_cmd cmds[] = {
	{ "gen/attach", "gen/attach {gen, run_dir}: a running hitless-dp generation (its dp.pid, "
	  "heartbeat and vhost/<vm>.sock under run_dir)", gen_attach_args, gen_attach },
	{ "gen/detach", "gen/detach {gen}: forget a generation that serves no VM", gen_only_args,
	  gen_detach },
	{ "gen/list", "gen/list: attached generations, pids, liveness", NULL, gen_list },
	{ "failover/standby", "failover/standby {gen}: where sessions go when their generation dies",
	  gen_only_args, standby },
	{ "vm/add", "vm/add {vm, gen, socket?, client?, mac?}: a frontend-facing vhost-user socket "
	  "(default <run-dir>/vhost/<vm>.sock; client: connect to socket and reconnect) served by "
	  "generation gen; mac: announced by an OVS-DPDK generation the VM moves to", vm_add_args, vm_add },
	{ "vm/del", "vm/del {vm}: close the VM's session and socket", vm_only_args, vm_del },
	{ "session/list", "session/list: every VM, its serving generation, counters", NULL,
	  session_list },
	{ "session/show", "session/show {vm}: one session with its negotiated state and rings",
	  vm_only_args, session_show },
	{ "session/preload", "session/preload {vm, gen}: replay the session to gen up to ring start; "
	  "ready_in_ns: how long a handoff sent now would wait for gen (its vhost thread woken)",
	  vm_gen_args, preload },
	{ "handoff/start", "handoff/start {vm, gen}: move the live session to gen (rollback: back to "
	  "the old one); replies with the control-plane window and ring positions", handoff_args,
	  handoff, handoff_before },
	{ "keeper/info", "keeper/info: this keeper's version, pid, state format (keeper/upgrade) and "
	  "open fds", NULL, keeper_info },
	{ "keeper/upgrade", "keeper/upgrade {binary}: hand every session, socket and generation to a "
	  "new keeper binary, which takes over under the same control socket (this one exits once it "
	  "says it is ready; if it does not, this one keeps serving)", upgrade_args, upgrade },
	{ "debug/handoff-pause", "debug/handoff-pause {ms}: the next handoff waits ms after stopping "
	  "the old rings, before starting the new ones (fault injection)", pause_args, pause_next },
};

/* Every command runs under kp.lock, so it never interleaves with a relayed frontend request. */
static int
locked(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	const struct kp_cmd *cmd = c->aux;
	int rc;

	if (cmd->before != NULL)
		cmd->before(args);
	pthread_mutex_lock(&kp.lock);
	rc = cmd->fn(args, result, err);
	kp_ev_timer(kp_timer_needed()); /* a handoff or a new generation may need the watch */
	kp_gen_share_update(); /* who serves from which CPU may have changed */
	kp_fdstore_sync(true);          /* (--fdstore) what it changed, stored */
	pthread_mutex_unlock(&kp.lock);
	return rc;
}

/* Register every command of cmds[]: 0, or the first error of ctl_register(), and then the
 * keeper does not start (main.c names the command, ctl_registry_refused()). */
int
kp_ctl_register(struct ctl_registry *reg)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		int rc = ctl_register(reg, cmds[i].name, cmds[i].usage, cmds[i].args, locked,
				      (void *)&cmds[i]);
		if (rc != 0)
			return rc;
	}
	return 0;
}
