/* SPDX-License-Identifier: Apache-2.0
 * Command registry and JSON-lines request handling (see ctl.h). The socket server lives in
 * ctl_server.c; this file has no I/O so it can be unit-tested directly.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

struct ctl_cmd {
	char *name;
	char *usage;
	const struct ctl_arg *args;
	ctl_handler fn;
	void *aux;
};

struct ctl_registry {
	struct ctl_cmd *cmds;
	size_t n, cap;
	char refused[80]; /* the first name ctl_register() refused, "" when none */
};

static int list_commands(struct ctl_call *call, json_t *args, json_t **result,
			 struct ctl_error *err);

struct ctl_registry *
ctl_registry_new(void)
{
	struct ctl_registry *reg = calloc(1, sizeof(*reg));

	if (reg == NULL)
		return NULL;
	if (ctl_register(reg, "list-commands", "list-commands: every command with its usage",
			 NULL, list_commands, reg) != 0) {
		ctl_registry_free(reg);
		return NULL;
	}
	return reg;
}

void
ctl_registry_free(struct ctl_registry *reg)
{
	if (reg == NULL)
		return;
	for (size_t i = 0; i < reg->n; i++) {
		free(reg->cmds[i].name);
		free(reg->cmds[i].usage);
	}
	free(reg->cmds);
	free(reg);
}

/* Names are "area/verb" (lower case, digits, '-', one or more '/'), or a bare built-in word. */
static bool
valid_name(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > 64 || name[0] == '/' || name[len - 1] == '/')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '/'))
			return false;
	}
	return true;
}

static struct ctl_cmd *
find_cmd(struct ctl_registry *reg, const char *name)
{
	for (size_t i = 0; i < reg->n; i++)
		if (strcmp(reg->cmds[i].name, name) == 0)
			return &reg->cmds[i];
	return NULL;
}

static int
add_cmd(struct ctl_registry *reg, const char *name, const char *usage,
	const struct ctl_arg *args, ctl_handler fn, void *aux)
{
	struct ctl_cmd *c;

	if (name == NULL || fn == NULL || !valid_name(name))
		return -EINVAL;
	if (find_cmd(reg, name) != NULL)
		return -EEXIST;
	if (reg->n == reg->cap) {
		size_t cap = reg->cap ? reg->cap * 2 : 32;
		struct ctl_cmd *cmds = realloc(reg->cmds, cap * sizeof(*cmds));
		if (cmds == NULL)
			return -ENOMEM;
		reg->cmds = cmds;
		reg->cap = cap;
	}
	c = &reg->cmds[reg->n];
	c->name = strdup(name);
	c->usage = strdup(usage ? usage : name);
	if (c->name == NULL || c->usage == NULL) {
		free(c->name);
		free(c->usage);
		return -ENOMEM;
	}
	c->args = args;
	c->fn = fn;
	c->aux = aux;
	reg->n++;
	return 0;
}

/* Add one command; on failure remember the first refused name, so that a process stopping at
 * start-up can say which command did not register (ctl_registry_refused). */
int
ctl_register(struct ctl_registry *reg, const char *name, const char *usage,
	     const struct ctl_arg *args, ctl_handler fn, void *aux)
{
	int rc = add_cmd(reg, name, usage, args, fn, aux);

	if (rc != 0 && reg->refused[0] == '\0')
		snprintf(reg->refused, sizeof(reg->refused), "%s", name ? name : "(null)");
	return rc;
}

const char *
ctl_registry_refused(const struct ctl_registry *reg)
{
	return reg->refused[0] != '\0' ? reg->refused : NULL;
}

int
ctl_register_table(struct ctl_registry *reg, const struct ctl_command *cmds, size_t n, void *aux)
{
	for (size_t i = 0; i < n; i++) {
		int rc = ctl_register(reg, cmds[i].name, cmds[i].usage, cmds[i].args, cmds[i].fn, aux);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int
ctl_fail(struct ctl_error *err, const char *code, const char *fmt, ...)
{
	va_list ap;

	snprintf(err->code, sizeof(err->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

static const char *
type_name(enum ctl_type t)
{
	switch (t) {
	case CTL_T_STRING: return "a string";
	case CTL_T_INT: return "an integer";
	case CTL_T_NUMBER: return "a number";
	case CTL_T_BOOL: return "a boolean";
	case CTL_T_OBJECT: return "an object";
	case CTL_T_ARRAY: return "an array";
	}
	return "?";
}

static bool
type_ok(enum ctl_type t, const json_t *v)
{
	switch (t) {
	case CTL_T_STRING: return json_is_string(v);
	case CTL_T_INT: return json_is_integer(v);
	case CTL_T_NUMBER: return json_is_number(v);
	case CTL_T_BOOL: return json_is_boolean(v);
	case CTL_T_OBJECT: return json_is_object(v);
	case CTL_T_ARRAY: return json_is_array(v);
	}
	return false;
}

/* Check args against the command's table: no unknown keys, required present, types, ranges. */
static int
check_args(const struct ctl_cmd *c, json_t *args, struct ctl_error *err)
{
	const char *key;
	json_t *v;

	json_object_foreach(args, key, v) {
		const struct ctl_arg *a = c->args;
		while (a != NULL && a->name != NULL && strcmp(a->name, key) != 0)
			a++;
		if (a == NULL || a->name == NULL)
			return ctl_fail(err, "invalid-args", "%s: unknown argument '%.64s'",
					c->name, key);
	}
	for (const struct ctl_arg *a = c->args; a != NULL && a->name != NULL; a++) {
		v = json_object_get(args, a->name);
		if (v == NULL) {
			if (a->required)
				return ctl_fail(err, "invalid-args", "%s: missing argument '%s'",
						c->name, a->name);
			continue;
		}
		if (!type_ok(a->type, v))
			return ctl_fail(err, "invalid-args", "%s: argument '%s' must be %s",
					c->name, a->name, type_name(a->type));
		if (a->type == CTL_T_INT && a->min < a->max) {
			json_int_t x = json_integer_value(v);
			if (x < a->min || x > a->max)
				return ctl_fail(err, "invalid-args",
						"%s: argument '%s' must be in [%lld, %lld]",
						c->name, a->name, a->min, a->max);
		}
	}
	return 0;
}

static json_t *
error_reply(json_t *id, const char *code, const char *message)
{
	return json_pack("{s:O?,s:b,s:{s:s,s:s}}", "id", id, "ok", 0, "error", "code", code,
			 "message", message);
}

json_t *
ctl_handle_line(struct ctl_registry *reg, const char *line, size_t len, void *conn)
{
	json_error_t jerr;
	struct ctl_error err = { "", "" };
	json_t *req, *id, *cmd, *args, *result = NULL, *reply;
	struct ctl_cmd *c;
	struct ctl_call call;
	char msg[300];

	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (req == NULL) {
		snprintf(msg, sizeof(msg), "invalid JSON at column %d: %s", jerr.column, jerr.text);
		return error_reply(NULL, "parse-error", msg);
	}
	if (!json_is_object(req)) {
		json_decref(req);
		return error_reply(NULL, "invalid-request", "request must be a JSON object");
	}
	id = json_object_get(req, "id");
	if (id != NULL && !json_is_integer(id) && !json_is_string(id)) {
		json_decref(req);
		return error_reply(NULL, "invalid-request", "'id' must be an integer or a string");
	}
	cmd = json_object_get(req, "cmd");
	if (!json_is_string(cmd)) {
		reply = error_reply(id, "invalid-request", "'cmd' must be a string");
		json_decref(req);
		return reply;
	}
	c = find_cmd(reg, json_string_value(cmd));
	if (c == NULL) {
		snprintf(msg, sizeof(msg), "unknown command '%.64s' (see list-commands)",
			 json_string_value(cmd));
		reply = error_reply(id, "unknown-command", msg);
		json_decref(req);
		return reply;
	}
	args = json_object_get(req, "args");
	if (args == NULL) {
		args = json_object();
		json_object_set_new(req, "args", args);
	}
	if (!json_is_object(args)) {
		reply = error_reply(id, "invalid-args", "'args' must be an object");
		json_decref(req);
		return reply;
	}
	if (check_args(c, args, &err) != 0) {
		reply = error_reply(id, err.code, err.message);
		json_decref(req);
		return reply;
	}
	call = (struct ctl_call){ .cmd = c->name, .aux = c->aux, .conn = conn };
	if (c->fn(&call, args, &result, &err) != 0) {
		json_decref(result);
		if (err.code[0] == '\0')
			ctl_fail(&err, "failed", "%s failed", c->name);
		reply = error_reply(id, err.code, err.message);
	} else {
		reply = json_pack("{s:O?,s:b,s:o}", "id", id, "ok", 1, "result",
				  result ? result : json_object());
	}
	json_decref(req);
	return reply;
}

static int
list_commands(struct ctl_call *call, json_t *args, json_t **result, struct ctl_error *err)
{
	struct ctl_registry *reg = call->aux;
	json_t *list = json_array();

	(void)args;
	(void)err;
	for (size_t i = 0; i < reg->n; i++)
		json_array_append_new(list, json_pack("{s:s,s:s}", "name", reg->cmds[i].name,
						      "usage", reg->cmds[i].usage));
	*result = json_pack("{s:o}", "commands", list);
	return 0;
}
