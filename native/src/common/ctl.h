/* SPDX-License-Identifier: Apache-2.0
 * Control sockets shared by every Hitless native process (hitless-dp, hitless-probe, keeper).
 *
 * Protocol (DESIGN.md §5): a Unix stream socket carrying one JSON object per line.
 *   request  {"id":1,"cmd":"area/verb","args":{...}}
 *   reply    {"id":1,"ok":true,"result":{...}}
 *            {"id":1,"ok":false,"error":{"code":"...","message":"..."}}
 *   event    {"event":"area/what","data":{...}}   (to clients that sent events/subscribe)
 *
 * Each command is registered once, next to the feature it controls, with a usage string and an
 * argument table; the registry checks the arguments before the handler runs, so a handler only
 * ever sees well-typed input. Every request gets exactly one reply.
 */
#ifndef HITLESS_CTL_H
#define HITLESS_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#define CTL_MAX_LINE_DEFAULT (64 * 1024)

enum ctl_type {
	CTL_T_STRING,
	CTL_T_INT,     /* JSON integer */
	CTL_T_NUMBER,  /* integer or real */
	CTL_T_BOOL,
	CTL_T_OBJECT,
	CTL_T_ARRAY,
};

/* One named argument of a command. Tables end with an entry whose name is NULL. */
struct ctl_arg {
	const char *name;
	enum ctl_type type;
	bool required;
	long long min, max; /* inclusive range for CTL_T_INT when min < max; ignored otherwise */
};

struct ctl_error {
	char code[32];
	char message[256];
};

struct ctl_call {
	const char *cmd;
	void *aux;  /* the pointer given at registration */
	void *conn; /* server connection that sent it (NULL in unit tests) */
};

/* A handler returns 0 and sets *result (NULL means {}), or returns -1 with err filled. */
typedef int (*ctl_handler)(struct ctl_call *call, json_t *args, json_t **result,
			   struct ctl_error *err);

struct ctl_registry;

struct ctl_registry *ctl_registry_new(void);
void ctl_registry_free(struct ctl_registry *reg);
/* Returns 0, -EEXIST when the name is taken, -EINVAL on a malformed name. */
int ctl_register(struct ctl_registry *reg, const char *name, const char *usage,
		 const struct ctl_arg *args, ctl_handler fn, void *aux);
/* The first name ctl_register() refused on reg, NULL when none: a process that stops at
 * start-up because a command did not register names it with this. */
const char *ctl_registry_refused(const struct ctl_registry *reg);

/* A command as a feature's table lists it, one line per command. */
struct ctl_command {
	const char *name;
	const char *usage;
	const struct ctl_arg *args;
	ctl_handler fn;
};
/* Register the n commands of a table, each with aux; stops at the first refusal and returns its
 * error (ctl_registry_refused names the command), 0 when every one registered. */
int ctl_register_table(struct ctl_registry *reg, const struct ctl_command *cmds, size_t n,
		       void *aux);

/* Parse and dispatch one request line; always returns one reply object (caller owns it). */
json_t *ctl_handle_line(struct ctl_registry *reg, const char *line, size_t len, void *conn);

/* Fill err and return -1: for handlers, `return ctl_fail(err, "unknown-vm", "...", ...)`. */
int ctl_fail(struct ctl_error *err, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* --- the socket server --------------------------------------------------------------- */
struct ctl_server;

/* Binds path (replacing a stale socket file), registers the built-in commands. */
struct ctl_server *ctl_server_new(const char *path, size_t max_line);
/* The same on a socket already listening at path (kept across exec by the process this one
 * replaces): nothing is bound or removed. */
struct ctl_server *ctl_server_adopt(const char *path, int lfd, size_t max_line);
struct ctl_registry *ctl_server_registry(struct ctl_server *srv);
/* The listening socket (to hand to a process that takes over). */
int ctl_server_listen_fd(const struct ctl_server *srv);
/* From a handler: another process serves path from now on. This server stops accepting, sends
 * the reply in hand, leaves the rest of its clients' input unanswered and closes them (they
 * connect again, to the new server), and its thread ends; ctl_server_free removes nothing. */
void ctl_server_hand_over(struct ctl_server *srv);
/* Run fn(arg) first thing in the server thread (e.g. to register it with a runtime whose
 * libraries need a thread id). Call before ctl_server_start(). */
void ctl_server_on_thread_start(struct ctl_server *srv, void (*fn)(void *), void *arg);
/* Serves in a thread of its own until ctl_server_free(). */
int ctl_server_start(struct ctl_server *srv);
void ctl_server_free(struct ctl_server *srv);
/* Sends an event to every subscribed client; steals data. Safe from any thread. */
void ctl_emit(struct ctl_server *srv, const char *event, json_t *data);

#endif
