/* SPDX-License-Identifier: Apache-2.0
 * Unit tests of the control-command registry and request parser: what every client of a
 * Hitless control socket relies on (one reply per request, errors that name the problem,
 * handlers that only ever see checked arguments).
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static int calls;

static int
echo(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	calls++;
	*result = json_pack("{s:O,s:s}", "args", args, "cmd", c->cmd);
	return 0;
}

static int
refuse(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	calls++;
	return ctl_fail(err, "unknown-vm", "no vm '%s'", json_string_value(json_object_get(args, "vm")));
}

static const struct ctl_arg echo_args[] = {
	{ "vm", CTL_T_STRING, true },
	{ "ms", CTL_T_INT, false, 0, 1000 },
	{ "flag", CTL_T_BOOL, false },
	{ NULL },
};

static json_t *
run(struct ctl_registry *reg, const char *line)
{
	json_t *r = ctl_handle_line(reg, line, strlen(line), NULL);
	assert(r != NULL);
	assert(json_is_boolean(json_object_get(r, "ok")));
	return r;
}

static const char *
code(json_t *r)
{
	return json_string_value(json_object_get(json_object_get(r, "error"), "code"));
}

static const char *
message(json_t *r)
{
	return json_string_value(json_object_get(json_object_get(r, "error"), "message"));
}

#define EXPECT_ERR(reg, line, want_code, want_substr)                                       \
	do {                                                                                \
		int before = calls;                                                         \
		json_t *r_ = run(reg, line);                                                \
		if (json_is_true(json_object_get(r_, "ok")) || strcmp(code(r_), want_code) ||  \
		    !strstr(message(r_), want_substr)) {                                    \
			char *s_ = json_dumps(r_, 0);                                       \
			fprintf(stderr, "FAIL %s:%d: %s -> %s\n", __FILE__, __LINE__, line, s_); \
			return 1;                                                           \
		}                                                                           \
		assert(calls == before); /* the handler never saw bad input */             \
		json_decref(r_);                                                            \
	} while (0)

int
main(void)
{
	struct ctl_registry *reg = ctl_registry_new();
	json_t *r;

	assert(reg != NULL);
	assert(ctl_register(reg, "vm/echo", "vm/echo {vm, ms?, flag?}", echo_args, echo, NULL) == 0);
	assert(ctl_register(reg, "vm/refuse", "vm/refuse {vm}", echo_args, refuse, NULL) == 0);
	assert(ctl_registry_refused(reg) == NULL);
	/* each name once; malformed names refused; the first refused name is kept for the
	 * start-up error that names it */
	assert(ctl_register(reg, "vm/echo", "dup", NULL, echo, NULL) == -EEXIST);
	assert(strcmp(ctl_registry_refused(reg), "vm/echo") == 0);
	assert(ctl_register(reg, "Bad Name", "x", NULL, echo, NULL) == -EINVAL);
	assert(ctl_register(reg, "vm/", "x", NULL, echo, NULL) == -EINVAL);
	assert(strcmp(ctl_registry_refused(reg), "vm/echo") == 0);

	/* a good request: reply carries the same id and the handler's result */
	r = run(reg, "{\"id\":7,\"cmd\":\"vm/echo\",\"args\":{\"vm\":\"a\",\"ms\":5}}");
	assert(json_is_true(json_object_get(r, "ok")));
	assert(json_integer_value(json_object_get(r, "id")) == 7);
	assert(strcmp(json_string_value(json_object_get(json_object_get(json_object_get(r, "result"), "args"), "vm")), "a") == 0);
	json_decref(r);
	/* string ids are echoed too */
	r = run(reg, "{\"id\":\"x-1\",\"cmd\":\"list-commands\"}");
	assert(strcmp(json_string_value(json_object_get(r, "id")), "x-1") == 0);
	assert(json_array_size(json_object_get(json_object_get(r, "result"), "commands")) == 3);
	json_decref(r);

	/* every kind of bad input: an error reply that names the problem, handler not called */
	EXPECT_ERR(reg, "{\"id\":1,\"cmd\":", "parse-error", "invalid JSON");
	EXPECT_ERR(reg, "[1,2]", "invalid-request", "JSON object");
	EXPECT_ERR(reg, "{\"id\":1}", "invalid-request", "'cmd'");
	EXPECT_ERR(reg, "{\"id\":[1],\"cmd\":\"vm/echo\"}", "invalid-request", "'id'");
	EXPECT_ERR(reg, "{\"id\":1,\"cmd\":\"vm/nope\"}", "unknown-command", "vm/nope");
	EXPECT_ERR(reg, "{\"id\":1,\"cmd\":\"vm/echo\",\"args\":[]}", "invalid-args", "'args'");
	EXPECT_ERR(reg, "{\"id\":1,\"cmd\":\"vm/echo\",\"args\":{}}", "invalid-args", "missing argument 'vm'");
	EXPECT_ERR(reg, "{\"id\":1,\"cmd\":\"vm/echo\",\"args\":{\"vm\":3}}", "invalid-args", "'vm' must be a string");
	EXPECT_ERR(reg, "{\"id\":1,\"cmd\":\"vm/echo\",\"args\":{\"vm\":\"a\",\"ms\":\"5\"}}", "invalid-args", "'ms' must be an integer");
	EXPECT_ERR(reg, "{\"id\":1,\"cmd\":\"vm/echo\",\"args\":{\"vm\":\"a\",\"ms\":5000}}", "invalid-args", "[0, 1000]");
	EXPECT_ERR(reg, "{\"id\":1,\"cmd\":\"vm/echo\",\"args\":{\"vm\":\"a\",\"bogus\":1}}", "invalid-args", "unknown argument 'bogus'");
	EXPECT_ERR(reg, "{\"id\":1,\"cmd\":\"vm/echo\",\"args\":{\"vm\":\"a\",\"vm\":\"b\"}}", "parse-error", "duplicate");
	/* a handler's own refusal arrives as an error with its code */
	r = run(reg, "{\"id\":2,\"cmd\":\"vm/refuse\",\"args\":{\"vm\":\"zz\"}}");
	assert(!json_is_true(json_object_get(r, "ok")));
	assert(strcmp(code(r), "unknown-vm") == 0 && strstr(message(r), "zz"));
	assert(json_integer_value(json_object_get(r, "id")) == 2);
	json_decref(r);

	ctl_registry_free(reg);

	/* a table registers in order and stops at its first refusal, naming it */
	{
		static const struct ctl_command table[] = {
			{ "vm/echo", "vm/echo {vm}", echo_args, echo },
			{ "list-commands", "taken by the built-in", NULL, echo },
			{ "vm/refuse", "vm/refuse {vm}", echo_args, refuse },
		};

		reg = ctl_registry_new();
		assert(ctl_register_table(reg, table, 1, NULL) == 0);
		assert(ctl_registry_refused(reg) == NULL);
		ctl_registry_free(reg);
		reg = ctl_registry_new();
		assert(ctl_register_table(reg, table, 3, NULL) == -EEXIST);
		assert(strcmp(ctl_registry_refused(reg), "list-commands") == 0);
		r = run(reg, "{\"id\":1,\"cmd\":\"vm/refuse\",\"args\":{\"vm\":\"a\"}}");
		assert(strcmp(code(r), "unknown-command") == 0);
		json_decref(r);
		ctl_registry_free(reg);
	}
	printf("test_ctl: ok\n");
	return 0;
}
