/* SPDX-License-Identifier: Apache-2.0
 * The forwarding stage: load it at start, swap it in place later (lib/swap, lib/rollback).
 *
 * A swap is prepared here, on the control thread: open the new object, refuse what is not a
 * Hitless stage or speaks another ABI, and find which of the two stages converts the FDB's
 * words when their state layouts differ. The switch itself is made by the packet loop at the
 * top of an iteration (loop.c), where every packet of the previous burst has been classified
 * and staged: it converts the words (all or none), publishes the new ops table and goes on.
 * The loop is the only thread that runs stage code, so once it has switched the old code is
 * not running and cannot be entered again. The previous stage stays loaded for lib/rollback.
 * lib/load does the opening and checking ahead of time (an operator's prepare step), so that
 * the swap of that path later only switches: no dlopen while the datapath is being changed.
 *
 * The stage's control commands (lib/info, lib/swap, lib/load, lib/unload, lib/check,
 * lib/rollback) are registered here.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rte_log.h>

#include "dp.h"

#define SWAP_TIMEOUT_NS 2000000000ull

/* dp.stage and dp.prev_stage change on the control thread; DPDK's telemetry thread reads the
 * running stage too (gen/info): this keeps it from seeing one half-copied. */
static pthread_mutex_t stage_lock = PTHREAD_MUTEX_INITIALIZER;

/* Open a stage object; 0, or -1 with err saying why it is not one this binary can run. The
 * object's code will run as this process: like sudo with its plugins, refuse a file that
 * someone else could have written (not a regular file, owned by another user than this one or
 * root, or writable by group or others). */
static int
stage_open(const char *path, struct dp_stage *s, struct ctl_error *err)
{
	void *h;
	const struct hitless_fwd_ops *ops;
	struct stat st;

	if (strlen(path) == 0 || strlen(path) >= sizeof(s->path))
		return ctl_fail(err, "invalid-args", "path: 1..%zu bytes", sizeof(s->path) - 1);
	if (stat(path, &st) != 0)
		return ctl_fail(err, "not-loadable", "cannot load %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)))
		return ctl_fail(err, "unsafe-file",
				"%s is not a regular file owned by this user or root and writable only "
				"by its owner (mode %04o, uid %u): refusing to run its code", path,
				(unsigned int)(st.st_mode & 07777), (unsigned int)st.st_uid);
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL)
		return ctl_fail(err, "not-loadable", "cannot load %s: %s", path, dlerror());
	ops = dlsym(h, HITLESS_FWD_SYMBOL);
	if (ops == NULL) {
		dlclose(h);
		return ctl_fail(err, "not-a-stage",
				"%s is not a Hitless forwarding stage (no '%s' symbol)", path,
				HITLESS_FWD_SYMBOL);
	}
	if (ops->abi != HITLESS_FWD_ABI) {
		ctl_fail(err, "abi-mismatch", "%s speaks stage ABI %u; this datapath speaks %d",
			 path, ops->abi, HITLESS_FWD_ABI);
		dlclose(h);
		return -1;
	}
	if (ops->classify == NULL || ops->encode == NULL || ops->decode == NULL ||
	    ops->layout == 0 || ops->name == NULL || ops->version == NULL) {
		dlclose(h);
		return ctl_fail(err, "not-a-stage", "%s: its ops table is incomplete", path);
	}
	s->ops = ops;
	s->handle = h;
	snprintf(s->path, sizeof(s->path), "%s", path);
	return 0;
}

static void
stage_close(struct dp_stage *s)
{
	if (s->handle != NULL)
		dlclose(s->handle);
	memset(s, 0, sizeof(*s));
}

static json_t *
stage_json(const struct dp_stage *s)
{
	if (s->ops == NULL)
		return json_null();
	return json_pack("{s:s,s:s,s:i,s:i,s:s}", "name", s->ops->name, "version",
			 s->ops->version, "abi", (int)s->ops->abi, "layout", (int)s->ops->layout,
			 "path", s->path);
}

json_t *
dp_running_stage_json(void)
{
	json_t *j;

	pthread_mutex_lock(&stage_lock);
	j = stage_json(&dp.stage);
	pthread_mutex_unlock(&stage_lock);
	return j;
}

/* lib/unload: close the stage lib/load kept (a prepared swap that was not made). */
static int
fwd_unload(json_t **result, struct ctl_error *err)
{
	if (dp.staged.ops == NULL)
		return ctl_fail(err, "nothing-staged", "no stage is loaded ahead (lib/load)");
	*result = json_pack("{s:o}", "unloaded", stage_json(&dp.staged));
	stage_close(&dp.staged);
	return 0;
}

int
dp_fwd_load(const char *path)
{
	struct ctl_error err = { 0 };

	if (stage_open(path, &dp.stage, &err) != 0) {
		fprintf(stderr, "hitless-dp: forwarding stage: %s\n", err.message);
		return -EPROTO;
	}
	dp_fdb_set_codec(dp.fdb, dp.stage.ops);
	__atomic_store_n(&dp.fwd, dp.stage.ops, __ATOMIC_RELEASE);
	return 0;
}

/* Ask the loop to switch to `to` (words converted by conv) and wait until it has. 0, or -1
 * when the loop did not take it in time (it is stuck, or not running: starting or stopping),
 * and then the request is withdrawn and nothing changed. */
static int
ask_loop(const struct hitless_fwd_ops *to, const struct hitless_fwd_ops *conv,
	 struct ctl_error *err)
{
	struct dp_swap *sw = &dp.swap;
	uint64_t deadline;
	bool yes = true;

	/* the loop reads `pending` on every iteration: only atomic stores touch the flags; the
	 * rest is published to the loop by the release store of `pending` below */
	__atomic_store_n(&sw->done, false, __ATOMIC_RELAXED);
	sw->to = to;
	sw->conv = conv;
	sw->asked_ns = hl_now_ns();
	sw->now_s = (uint32_t)(sw->asked_ns / 1000000000ull);
	sw->taken_ns = 0;
	sw->window_ns = 0;
	memset(&sw->mig, 0, sizeof(sw->mig));
	__atomic_store_n(&sw->pending, true, __ATOMIC_RELEASE);
	dp_wake();
	deadline = sw->asked_ns + SWAP_TIMEOUT_NS;
	while (!__atomic_load_n(&sw->done, __ATOMIC_ACQUIRE)) {
		/* withdraw the request if the loop has not taken it by the deadline */
		if (hl_now_ns() > deadline &&
		    __atomic_compare_exchange_n(&sw->pending, &yes, false, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return ctl_fail(err, "loop-busy",
					"the packet loop did not reach a quiescent point in %llu ms",
					SWAP_TIMEOUT_NS / 1000000);
		yes = true;
		hl_sleep_ns(20000);
	}
	return 0;
}

/* The stage that converts the FDB's words from the running stage's layout to next's; NULL
 * with err "no-migration" when neither does. */
static const struct hitless_fwd_ops *
converter(const struct hitless_fwd_ops *next, struct ctl_error *err)
{
	const struct hitless_fwd_ops *from = dp.stage.ops;
	const struct hitless_fwd_ops *conv = dp_fdb_converter(from, next);

	if (conv == NULL)
		ctl_fail(err, "no-migration",
			 "state layout %u (%s %s) -> %u (%s %s): neither stage converts it",
			 from->layout, from->name, from->version, next->layout, next->name,
			 next->version);
	return conv;
}

/* "from" or "to": which stage converts; NULL when the layouts are the same. */
static const char *
converted_by(const struct hitless_fwd_ops *next, const struct hitless_fwd_ops *conv)
{
	if (dp.stage.ops->layout == next->layout)
		return NULL;
	return conv == dp.stage.ops ? "from" : "to";
}

/* Open a stage to switch to: not the running one (dlopen then only counted a reference). */
static int
open_other(const char *path, struct dp_stage *next, struct ctl_error *err)
{
	if (stage_open(path, next, err) != 0)
		return -1;
	if (next->ops == dp.stage.ops) {
		stage_close(next);
		return ctl_fail(err, "already-running", "%s is the running stage", path);
	}
	return 0;
}

/* lib/check: what lib/swap would say about the stage at path, without swapping (the object is
 * closed again). */
static int
fwd_check(const char *path, json_t **result, struct ctl_error *err)
{
	struct dp_stage next = { 0 };
	const struct hitless_fwd_ops *conv;

	if (stage_open(path, &next, err) != 0)
		return -1;
	conv = converter(next.ops, err);
	if (conv != NULL)
		*result = json_pack("{s:o,s:o,s:s?,s:I}", "from", stage_json(&dp.stage), "to",
				    stage_json(&next), "converted_by", converted_by(next.ops, conv),
				    "fdb_entries", (json_int_t)dp_fdb_count(dp.fdb));
	stage_close(&next); /* also when it is the running one: dlopen counted one more */
	return conv != NULL ? 0 : -1;
}

/* lib/load: open and check the stage at path now and keep it, so that lib/swap of that path
 * only switches. */
static int
fwd_preload(const char *path, json_t **result, struct ctl_error *err)
{
	struct dp_stage next = { 0 };
	const struct hitless_fwd_ops *conv;

	if (open_other(path, &next, err) != 0)
		return -1;
	conv = converter(next.ops, err);
	if (conv == NULL) {
		stage_close(&next);
		return -1;
	}
	stage_close(&dp.staged); /* one staged stage at a time: the newest load wins */
	dp.staged = next;
	*result = json_pack("{s:o,s:s?,s:I}", "staged", stage_json(&dp.staged), "converted_by",
			    converted_by(next.ops, conv), "fdb_entries",
			    (json_int_t)dp_fdb_count(dp.fdb));
	return 0;
}

/* lib/swap and lib/rollback: swap the running stage for the one at path, or back to the
 * previous one (path NULL); when refused the old stage goes on forwarding (err says why). */
static int
fwd_swap(const char *path, json_t **result, struct ctl_error *err)
{
	struct dp_stage next = { 0 };
	const struct hitless_fwd_ops *from = dp.stage.ops, *conv;
	struct dp_swap *sw = &dp.swap;
	bool rollback = path == NULL, preloaded = false;

	if (rollback) {
		if (dp.prev_stage.ops == NULL)
			return ctl_fail(err, "no-previous",
					"no previous stage to roll back to: none was swapped in");
		next = dp.prev_stage;
	} else if (dp.staged.ops != NULL && strcmp(dp.staged.path, path) == 0) {
		next = dp.staged; /* lib/load opened it: only the switch is left */
		memset(&dp.staged, 0, sizeof(dp.staged));
		preloaded = true;
		if (next.ops == from) { /* it became the running stage since (lib/rollback) */
			stage_close(&next);
			return ctl_fail(err, "already-running", "%s is the running stage", path);
		}
	} else if (open_other(path, &next, err) != 0) {
		return -1;
	}
	conv = converter(next.ops, err);
	if (conv == NULL)
		goto refuse;
	if (ask_loop(next.ops, conv, err) != 0)
		goto refuse;
	if (sw->mig.rc != 0) {
		ctl_fail(err, "migrate-failed",
			 "%s %s could not convert FDB entry %s from layout %u to %u (%s); "
			 "nothing changed, %s %s goes on forwarding",
			 conv->name, conv->version, sw->mig.mac, from->layout, next.ops->layout,
			 strerror(sw->mig.rc < 0 ? -sw->mig.rc : sw->mig.rc), from->name,
			 from->version);
		goto refuse;
	}
	*result = json_pack("{s:o,s:o,s:s,s:b,s:i,s:s?,s:I,s:I,s:I,s:I}",
			    "from", stage_json(&dp.stage), "to", stage_json(&next),
			    "kind", rollback ? "rollback" : "swap", "preloaded", preloaded,
			    "migrated", (int)sw->mig.entries,
			    "converted_by", converted_by(next.ops, conv),
			    "asked_ns", (json_int_t)sw->asked_ns,
			    "at_ns", (json_int_t)sw->taken_ns,
			    "wait_ns", (json_int_t)(sw->taken_ns - sw->asked_ns),
			    "window_ns", (json_int_t)sw->window_ns);
	pthread_mutex_lock(&stage_lock);
	if (rollback) {
		dp.prev_stage = dp.stage;   /* lib/rollback again goes forward */
	} else {
		stage_close(&dp.prev_stage);
		dp.prev_stage = dp.stage;
	}
	dp.stage = next;
	pthread_mutex_unlock(&stage_lock);
	dp.swaps++;
	return 0;
refuse:
	if (preloaded && dp.staged.ops == NULL)
		dp.staged = next; /* still loaded ahead for a retry */
	else if (!rollback)
		stage_close(&next);
	return -1;
}

static int
cmd_lib_info(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	*result = json_pack("{s:o,s:o,s:o,s:i,s:i}", "stage", stage_json(&dp.stage), "previous",
			    stage_json(&dp.prev_stage), "staged", stage_json(&dp.staged),
			    "swaps", (int)dp.swaps, "abi", HITLESS_FWD_ABI);
	return 0;
}

static const struct ctl_arg lib_swap_args[] = {
	{ "path", CTL_T_STRING, true },
	{ NULL },
};

static int
cmd_lib_swap(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	return fwd_swap(json_string_value(json_object_get(args, "path")), result, err);
}

static int
cmd_lib_load(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	return fwd_preload(json_string_value(json_object_get(args, "path")), result, err);
}

static int
cmd_lib_unload(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	return fwd_unload(result, err);
}

static int
cmd_lib_check(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	return fwd_check(json_string_value(json_object_get(args, "path")), result, err);
}

static int
cmd_lib_rollback(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	return fwd_swap(NULL, result, err);
}

static const struct ctl_command lib_cmds[] = {
	{ "lib/info", "lib/info: the running forwarding stage and the one lib/rollback returns to",
	  NULL, cmd_lib_info },
	{ "lib/swap", "lib/swap {path}: replace the forwarding stage in place, converting the FDB "
	  "when its state layout differs; the old stage goes on when refused", lib_swap_args,
	  cmd_lib_swap },
	{ "lib/load", "lib/load {path}: open and check a stage now and keep it, so that lib/swap of "
	  "the same path only switches", lib_swap_args, cmd_lib_load },
	{ "lib/unload", "lib/unload: close the stage lib/load kept (a prepared swap not made)", NULL,
	  cmd_lib_unload },
	{ "lib/check", "lib/check {path}: would lib/swap take this stage (loads, ABI, a conversion "
	  "of the FDB's layout)? Changes nothing", lib_swap_args, cmd_lib_check },
	{ "lib/rollback", "lib/rollback: swap back to the previous forwarding stage", NULL,
	  cmd_lib_rollback },
};

int
dp_fwd_ctl_register(struct ctl_registry *reg)
{
	return ctl_register_table(reg, lib_cmds, RTE_DIM(lib_cmds), NULL);
}
