/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "util.h"

bool
hl_valid_name(const char *s)
{
	size_t len = s ? strlen(s) : 0;

	if (len == 0 || len > HL_NAME_MAX || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

int
hl_parse_u32(const char *prog, const char *opt, const char *s, uint32_t min, uint32_t max,
	     uint32_t *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '\0' || *s == '-' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "%s: %s: '%s' is not a number in [%u, %u]\n", prog, opt, s, min, max);
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

void
hl_sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull),
			       .tv_nsec = (long)(ns % 1000000000ull) };

	nanosleep(&ts, NULL);
}

void
hl_tight_timer_slack(void)
{
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
}

volatile sig_atomic_t hl_quit;

static void
on_quit(int sig)
{
	(void)sig;
	hl_quit = 1;
}

void
hl_catch_quit(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_quit;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

int
hl_write_pidfile(const char *path)
{
	char tmp[4096];
	FILE *f;
	int rc = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	if ((f = fopen(tmp, "w")) == NULL)
		return -errno;
	if (fprintf(f, "%d\n", (int)getpid()) < 0)
		rc = -EIO;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc != 0)
		unlink(tmp);
	return rc;
}

int
hl_rt_self(const char *prog, uint32_t prio)
{
	static bool said;
	struct sched_param sp = { .sched_priority = (int)prio };
	int rc;

	if (prio == 0)
		return 0;
	rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
	if (rc != 0 && !__atomic_exchange_n(&said, true, __ATOMIC_RELAXED))
		fprintf(stderr, "%s: real-time priority %u refused (%s): running at normal priority, "
			"a busy neighbour on its core can delay it\n", prog, prio, strerror(rc));
	return -rc;
}

bool
hl_rt_thread(void)
{
	int policy;
	struct sched_param sp;

	return pthread_getschedparam(pthread_self(), &policy, &sp) == 0 &&
	       (policy == SCHED_FIFO || policy == SCHED_RR);
}
