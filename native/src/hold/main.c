/* SPDX-License-Identifier: Apache-2.0
 * hitless-hold: the holding port of an OVS-DPDK generation (DESIGN.md §12).
 *
 *   hitless-hold --iface IFACE --ctl PATH [--pidfile PATH] [--buffer-mb N]
 *
 * Stock OVS has nowhere to keep a VM's frames while the VM's rings move between two
 * ovs-vswitchd processes: the old one has stopped them, the new one has not started them, and
 * either drops what it would send there. During that window the new generation sends the
 * moving VM's frames out of its hold port instead, a veth end whose other end, IFACE, is this
 * process's. While holding, nothing reads IFACE: the frames wait in the socket's receive
 * buffer, in order. On release they are sent back into the generation's hold port, oldest first
 * (the generation then delivers them into the VM's ring, started by then), and from then on
 * each frame is reflected as it comes until the next hold.
 *
 * Control (ctl.h protocol): hold/start — from its reply on, nothing is read (frames are held);
 * hold/release — every held frame sent back before the reply, which counts them; stats/show.
 * Not on any packet path outside a switch; asleep in poll() when idle.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl.h"
#include "util.h"

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

#define FRAME_MAX 9216

enum mode { MODE_PASS, MODE_HOLD };

static struct {
	int sock, wake;
	pthread_mutex_t lock;
	pthread_cond_t done;
	/* what the control thread asked for, and what the loop is doing (under lock) */
	enum mode want, cur;
	/* bumped by the loop each time it has acted on a request */
	uint64_t served, asked;
	uint64_t last_released;
	_Atomic uint64_t held_total, reflected, send_errors, holds, ignored;
} h = { .sock = -1, .wake = -1, .lock = PTHREAD_MUTEX_INITIALIZER, .done = PTHREAD_COND_INITIALIZER };

static void
usage(FILE *f)
{
	fprintf(f, "usage: hitless-hold --iface IFACE --ctl PATH [--pidfile PATH] [--buffer-mb N]\n"
		   "  --iface      the veth end this process holds (the other end is a generation's hold port)\n"
		   "  --ctl        control socket path\n"
		   "  --pidfile    written before the control socket exists\n"
		   "  --buffer-mb  receive buffer for held frames (default 64)\n");
}

/* Send back every frame waiting on the socket; returns how many. paced: a held backlog goes
 * back BATCH frames at a time, PACE_NS apart (64 kpps): the VM's ring takes at most its size
 * (256 descriptors is common) before its driver has emptied it, and the generation drops what
 * does not fit, so the backlog is fed in small bursts, not all at once; and well above the
 * VM's own rate, since what comes meanwhile joins the backlog (at 32 kpps a backlog of 3500
 * frames for a VM receiving 23 kpps took 150 ms to drain).
 * until_ns: a stream that never lets up (frames sent back to the hold port again) does not
 * keep the loop from its control requests past then. */
#define BATCH 16
#define PACE_NS 250000ull
#define RELEASE_MAX_NS 2000000000ull /* a release: the backlog, however long, up to 2 s */
#define PASS_TURN_NS 20000000ull     /* passing frames: 20 ms, then a look at the requests */

static uint64_t
reflect_all(bool paced, uint64_t until_ns)
{
	static unsigned char buf[FRAME_MAX];
	uint64_t n = 0, seen = 0;

	for (;;) {
		ssize_t len;

		if (seen > 0 && seen % BATCH == 0) {
			if (hl_now_ns() > until_ns)
				break;
			if (paced)
				hl_sleep_ns(PACE_NS);
		}
		len = recv(h.sock, buf, sizeof(buf), MSG_DONTWAIT);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			break; /* EAGAIN: nothing more waits */
		}
		seen++;
		/* only a moving VM's own frames are sent here; a flood or a multicast that a
		 * controller's pipeline put out of every port goes no further (sent back, it would
		 * go round the generations for ever) */
		if (len < 14 || (buf[0] & 1)) {
			atomic_fetch_add(&h.ignored, 1);
			continue;
		}
		if (send(h.sock, buf, (size_t)len, 0) != len)
			atomic_fetch_add(&h.send_errors, 1);
		n++;
	}
	return n;
}

/* Ask the loop for a mode and wait until it has acted on it; returns what release sent back. */
static uint64_t
ask(enum mode m)
{
	uint64_t one = 1, ticket, released;

	pthread_mutex_lock(&h.lock);
	h.want = m;
	ticket = ++h.asked;
	if (write(h.wake, &one, sizeof(one)) < 0) {
		/* the eventfd cannot overflow at one write per request */
	}
	while (h.served < ticket && !hl_quit)
		pthread_cond_wait(&h.done, &h.lock);
	released = h.last_released;
	pthread_mutex_unlock(&h.lock);
	return released;
}

static int
cmd_hold(struct ctl_call *call, json_t *args, json_t **result, struct ctl_error *err)
{
	ask(MODE_HOLD);
	atomic_fetch_add(&h.holds, 1);
	*result = json_pack("{s:b}", "holding", 1);
	return 0;
}

static int
cmd_release(struct ctl_call *call, json_t *args, json_t **result, struct ctl_error *err)
{
	uint64_t n = ask(MODE_PASS);

	*result = json_pack("{s:I}", "released", (json_int_t)n);
	return 0;
}

static int
cmd_stats(struct ctl_call *call, json_t *args, json_t **result, struct ctl_error *err)
{
	struct tpacket_stats st = { 0 };
	socklen_t sl = sizeof(st);
	int holding;

	/* the kernel's count of frames the full buffer refused (reset by each read) */
	getsockopt(h.sock, SOL_PACKET, PACKET_STATISTICS, &st, &sl);
	pthread_mutex_lock(&h.lock);
	holding = h.cur == MODE_HOLD;
	pthread_mutex_unlock(&h.lock);
	*result = json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:I}", "holding", holding, "holds",
			    (json_int_t)atomic_load(&h.holds), "released", (json_int_t)atomic_load(&h.held_total),
			    "reflected", (json_int_t)atomic_load(&h.reflected), "send_errors",
			    (json_int_t)atomic_load(&h.send_errors), "ignored", (json_int_t)atomic_load(&h.ignored),
			    "dropped", (json_int_t)st.tp_drops);
	return 0;
}

static const struct ctl_arg no_args[] = { { NULL } };
static const struct ctl_command cmds[] = {
	{ "hold/start", "stop reading: frames from the hold port wait, in order", no_args, cmd_hold },
	{ "hold/release", "send every held frame back, oldest first; then reflect as they come", no_args, cmd_release },
	{ "stats/show", "holding or not; frames released, reflected, ignored (multicast), refused by a full buffer", no_args, cmd_stats },
};

static int
open_iface(const char *iface, int buffer_mb)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	int one = 1, bytes = buffer_mb * 1024 * 1024;
	/* protocol 0: the socket sees nothing until it is bound to IFACE alone */
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);

	if (s < 0)
		return -errno;
	sll.sll_ifindex = (int)if_nametoindex(iface);
	if (sll.sll_ifindex == 0) {
		close(s);
		return -ENODEV;
	}
	if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) != 0 ||
	    setsockopt(s, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) != 0 ||
	    bind(s, (struct sockaddr *)&sll, sizeof(sll)) != 0) {
		int e = errno;

		close(s);
		return -e;
	}
	return s;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "iface", required_argument, NULL, 'i' },
		{ "ctl", required_argument, NULL, 'c' },
		{ "buffer-mb", required_argument, NULL, 'b' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *iface = NULL, *ctl_path = NULL, *pidfile = NULL;
	uint32_t buffer_mb = 64;
	struct ctl_server *srv;
	int c, rc;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'i': iface = optarg; break;
		case 'c': ctl_path = optarg; break;
		case 'p': pidfile = optarg; break;
		case 'b':
			if (hl_parse_u32("hitless-hold", "--buffer-mb", optarg, 1, 1024, &buffer_mb) != 0)
				return 2;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!iface || !ctl_path || optind != argc || strlen(iface) >= IFNAMSIZ) {
		usage(stderr);
		return 2;
	}
	hl_catch_quit();
	h.sock = open_iface(iface, (int)buffer_mb);
	if (h.sock < 0) {
		fprintf(stderr, "hitless-hold: %s: %s\n", iface, strerror(-h.sock));
		return 1;
	}
	if (pidfile) {
		FILE *f = fopen(pidfile, "w");

		if (!f) {
			fprintf(stderr, "hitless-hold: %s: %s\n", pidfile, strerror(errno));
			return 1;
		}
		fprintf(f, "%d\n", (int)getpid());
		fclose(f);
	}
	h.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	srv = ctl_server_new(ctl_path, 0);
	if (h.wake < 0 || srv == NULL) {
		fprintf(stderr, "hitless-hold: control socket %s: %s\n", ctl_path, strerror(errno));
		return 1;
	}
	if ((rc = ctl_register_table(ctl_server_registry(srv), cmds, sizeof(cmds) / sizeof(cmds[0]), NULL)) != 0 ||
	    ctl_server_start(srv) != 0) {
		fprintf(stderr, "hitless-hold: control commands: %s\n", strerror(rc ? -rc : errno));
		return 1;
	}
	printf("{\"event\":\"ready\",\"pid\":%d,\"iface\":\"%s\",\"ctl\":\"%s\"}\n", (int)getpid(), iface, ctl_path);
	fflush(stdout);

	while (!hl_quit) {
		struct pollfd p[2] = { { .fd = h.wake, .events = POLLIN }, { .fd = h.sock, .events = POLLIN } };
		enum mode cur;
		uint64_t n;

		pthread_mutex_lock(&h.lock);
		cur = h.cur;
		pthread_mutex_unlock(&h.lock);
		/* holding: only a request wakes the loop; the frames wait in the kernel */
		if (poll(p, cur == MODE_HOLD ? 1 : 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN) {
			uint64_t v;

			if (read(h.wake, &v, sizeof(v)) < 0) {
				/* spurious: the request is read under the lock below */
			}
			pthread_mutex_lock(&h.lock);
			n = 0;
			if (h.want == MODE_PASS && h.cur == MODE_HOLD) {
				n = reflect_all(true, hl_now_ns() + RELEASE_MAX_NS);
				atomic_fetch_add(&h.held_total, n);
			}
			h.cur = h.want;
			h.last_released = n;
			h.served = h.asked;
			pthread_cond_broadcast(&h.done);
			pthread_mutex_unlock(&h.lock);
			continue;
		}
		if (cur == MODE_PASS && (p[1].revents & POLLIN))
			atomic_fetch_add(&h.reflected, reflect_all(false, hl_now_ns() + PASS_TURN_NS));
	}
	/* a request in flight gets its answer before the server goes */
	pthread_mutex_lock(&h.lock);
	h.served = h.asked;
	pthread_cond_broadcast(&h.done);
	pthread_mutex_unlock(&h.lock);
	ctl_server_free(srv);
	close(h.sock);
	fprintf(stderr, "hitless-hold: stopped\n");
	return 0;
}
