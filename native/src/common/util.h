/* SPDX-License-Identifier: Apache-2.0
 * Small helpers shared by the native processes: clocks and name checks.
 */
#ifndef HITLESS_UTIL_H
#define HITLESS_UTIL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define HL_NAME_MAX 32

/* CLOCK_MONOTONIC in ns: the one clock every Hitless timestamp uses (vDSO, no syscall). */
static inline uint64_t
hl_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time the calling thread has run, in ns (a system call: not for every iteration). */
static inline uint64_t
hl_thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* VM and generation names: 1..32 of [A-Za-z0-9_.-], not starting with '.' or '-'. */
bool hl_valid_name(const char *s);

/* Parse a command-line number in [min, max]; on error print "PROG: OPT: '...' is not a number
 * in [min, max]" on stderr and return -1. */
int hl_parse_u32(const char *prog, const char *opt, const char *s, uint32_t min, uint32_t max,
		 uint32_t *out);

/* Name this process in the pid file path: written beside it and renamed over it, so a reader
 * sees the old pid or the new one, never an empty or half-written file. 0 or -errno. */
int hl_write_pidfile(const char *path);

/* Put the calling thread in SCHED_FIFO at prio (1..99; 0: leave it as it is), so that a
 * busy neighbour at normal priority on the same core cannot hold it off (the kernel's RT
 * throttling still leaves others 5%). Threads it creates afterwards inherit it. 0 or -errno;
 * the first refusal (no CAP_SYS_NICE, a cgroup with no RT budget) is said once on stderr by prog. */
int hl_rt_self(const char *prog, uint32_t prio);

/* Whether the calling thread runs SCHED_FIFO or SCHED_RR (its sched_yield lets no normal
 * thread run: a wait in it must sleep instead). */
bool hl_rt_thread(void);

/* Sleep for ns nanoseconds (bounded naps in idle loops). */
void hl_sleep_ns(uint64_t ns);

/* Make short nanosleeps short: the default 50 us timer slack would stretch every nap. */
void hl_tight_timer_slack(void);

/* Set by SIGTERM and SIGINT once hl_catch_quit() ran; the program's loops look at it and shut
 * down (the handler does nothing else). */
extern volatile sig_atomic_t hl_quit;

/* SIGTERM and SIGINT set hl_quit, without SA_RESTART (a blocking call returns EINTR and the
 * loop sees the flag); SIGPIPE is ignored (a peer gone shows as EPIPE, not a dead process). */
void hl_catch_quit(void);

#endif
