/* SPDX-License-Identifier: Apache-2.0
 * The keeper's event loop plumbing: one epoll set over every socket the keeper holds (each
 * VM's listening socket, its frontend connection, its connections to generations) and the
 * periodic timer for heartbeat watching and client-mode reconnects, and an eventfd by which
 * another keeper thread wakes the relay.
 *
 * Whoever opens a socket adds it here with what it is for (kind, VM slot, generation); the
 * relay (relay.c) waits here and gets those three back with each event. The tag's encoding
 * stays inside this file.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "keeper.h"

static int epfd = -1, timerfd = -1, wakefd = -1;
static uint32_t armed_us;

static uint64_t
ev_tag(enum kp_ev_kind k, int vm, int gen)
{
	return (uint64_t)k << 32 | (uint64_t)vm << 8 | (uint64_t)gen;
}

/* Create the epoll set and the timer (disarmed until kp_ev_timer sets a period). 0 or -errno. */
int
kp_ev_init(void)
{
	epfd = epoll_create1(EPOLL_CLOEXEC);
	timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (epfd < 0 || timerfd < 0 || wakefd < 0)
		return -errno;
	kp_ev_add(timerfd, KP_EV_TIMER, 0, 0);
	kp_ev_add(wakefd, KP_EV_WAKE, 0, 0);
	return 0;
}

void
kp_ev_wake(void)
{
	uint64_t one = 1;

	if (write(wakefd, &one, sizeof(one)) < 0) {
		/* the counter is already non-zero: the relay is woken anyway */
	}
}

/* Fire the timer every period_us, or never (0). Only what needs it keeps it running: the
 * heartbeats of generations that serve VMs, reconnects to frontend-owned sockets; a keeper
 * with nothing to watch does not wake for it. Re-arms only when the period changes. */
void
kp_ev_timer(uint32_t period_us)
{
	struct itimerspec its = { 0 };

	if (period_us == armed_us)
		return;
	its.it_interval.tv_sec = period_us / 1000000;
	its.it_interval.tv_nsec = (long)(period_us % 1000000) * 1000;
	its.it_value = its.it_interval;
	if (timerfd_settime(timerfd, 0, &its, NULL) == 0)
		armed_us = period_us;
}

void
kp_ev_add(int fd, enum kp_ev_kind kind, int vm, int gen)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = ev_tag(kind, vm, gen) };

	epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

void
kp_ev_del(int fd)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* Wait up to timeout_ms for events and decode each one's tag into evs[]. A timer expiry or a
 * wake is consumed here (the fd read), so the caller only acts on it; a spurious one (nothing
 * to read) is left out. Returns how many events evs[] holds (0 on an interrupted wait). */
int
kp_ev_wait(struct kp_event *evs, int max, int timeout_ms)
{
	struct epoll_event raw[32];
	int n, out = 0;

	if (max > 32)
		max = 32;
	n = epoll_wait(epfd, raw, max, timeout_ms);
	for (int i = 0; i < n; i++) {
		uint64_t tag = raw[i].data.u64;
		struct kp_event *e = &evs[out];

		e->kind = (enum kp_ev_kind)(tag >> 32);
		e->vm = (int)((tag >> 8) & 0xff);
		e->gen = (int)(tag & 0xff);
		if (e->kind == KP_EV_TIMER) {
			uint64_t exp;

			if (read(timerfd, &exp, sizeof(exp)) < 0)
				continue;
		} else if (e->kind == KP_EV_WAKE) {
			uint64_t n;

			if (read(wakefd, &n, sizeof(n)) < 0)
				continue;
		}
		out++;
	}
	return out;
}
