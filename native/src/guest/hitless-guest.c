/* SPDX-License-Identifier: Apache-2.0
 * hitless-guest: the program a lab QEMU guest runs (as PID 1, after the initramfs's /init has
 * mounted /proc, /sys and /dev). It loads the virtio network driver, brings the interface up
 * and sends back every frame addressed to it with the MACs swapped, on the queue pair it came
 * in on, so a probe's numbered flows measure the path through a real Linux virtio-net driver. What the guest sees is
 * reported on the console (stdout) as JSON lines:
 *   {"event":"ready","mac":...,"queues":N}   the interface is up and reflecting
 *   {"event":"carrier","up":B}               the driver's carrier changed
 *   {"event":"kmsg","level":L,"text":...}    a kernel message logged after start-up
 *   {"event":"stats",...}                    on the "stats" command
 * Commands, one per line on the console (stdin): stats, reload (rmmod and insmod virtio_net:
 * the device is reset and renegotiated inside the same vhost-user session), reboot.
 *
 * usage: hitless-guest IFACE MODULE_DIR MODULE...   (modules in load order; the last is the
 * network driver that "reload" unloads and loads again)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define MAX_MODULES 16
#define MAX_QUEUES  16
#define FRAME_MAX   2048
#define BURST       64
#define FANOUT_ID   0x4c48

/* One reflecting thread per receive queue: its socket gets what arrived on that queue
 * (PACKET_FANOUT_QM) and it runs on its own CPU, so what it sends leaves on that CPU's
 * transmit queue (virtio-net's XPS): a flow comes back on the queue pair it came in on. */
struct worker {
	struct guest *g;
	int idx, sock;
	pthread_t thread;
	bool running;
	uint64_t rx, reflected, tx_errors, foreign; /* atomic */
};

struct guest {
	const char *iface, *moddir;
	const char *modules[MAX_MODULES];
	int n_modules;
	int kmsg;
	int ifindex;
	unsigned char mac[ETH_ALEN];
	int carrier; /* -1 unknown */
	int nq;
	struct worker w[MAX_QUEUES];
	volatile bool stop;
	uint64_t kmsg_lines, reloads;
};

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One JSON line on the console; the object is consumed. */
static void
emit(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);

	if (s != NULL) {
		printf("%s\n", s);
		fflush(stdout);
		free(s);
	}
	json_decref(o);
}

static void
fail(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	emit(json_pack("{s:s,s:s}", "event", "error", "text", buf));
}

static int
load_module(struct guest *g, const char *name)
{
	char path[512];
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s.ko", g->moddir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fail("cannot open module %s: %s", path, strerror(errno));
		return -1;
	}
	rc = (int)syscall(SYS_finit_module, fd, "", 0);
	close(fd);
	if (rc != 0 && errno != EEXIST) {
		fail("cannot load module %s: %s", name, strerror(errno));
		return -1;
	}
	return 0;
}

static int
read_sys_int(const struct guest *g, const char *attr)
{
	char path[256], buf[32];
	int fd, n;

	snprintf(path, sizeof(path), "/sys/class/net/%s/%s", g->iface, attr);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = (int)read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return atoi(buf);
}

static int
count_queues(const struct guest *g)
{
	char path[256];
	int n = 0;

	for (;; n++) {
		snprintf(path, sizeof(path), "/sys/class/net/%s/queues/rx-%d", g->iface, n);
		if (access(path, F_OK) != 0)
			return n;
	}
}

/* Wait for the interface (the driver probes asynchronously) and bring it up with every queue
 * pair the device offers in use (the driver's default: one per CPU). */
static int
iface_up(struct guest *g)
{
	struct ifreq ifr;
	uint64_t until = now_ms() + 30000;
	int fd;

	while ((g->ifindex = (int)if_nametoindex(g->iface)) == 0) {
		if (now_ms() > until) {
			fail("interface %s did not appear", g->iface);
			return -1;
		}
		usleep(20000);
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fail("socket: %s", strerror(errno));
		return -1;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", g->iface);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0 ||
	    (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr)) != 0 ||
	    ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
		fail("cannot bring %s up: %s", g->iface, strerror(errno));
		close(fd);
		return -1;
	}
	memcpy(g->mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
	close(fd);
	g->nq = count_queues(g);
	if (g->nq < 1)
		g->nq = 1;
	if (g->nq > MAX_QUEUES)
		g->nq = MAX_QUEUES;
	return 0;
}

/* A packet socket on the interface in the fanout group that hands each one a receive queue. */
static int
queue_socket(struct guest *g)
{
	struct sockaddr_ll sll;
	int one = 1, fanout = FANOUT_ID | (PACKET_FANOUT_QM << 16);
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));

	if (fd < 0) {
		fail("packet socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = g->ifindex;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) != 0 ||
	    setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof(fanout)) != 0) {
		fail("packet socket on %s: %s", g->iface, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void
emit_ready(struct guest *g, const char *event)
{
	char mac[18];

	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", g->mac[0], g->mac[1],
		 g->mac[2], g->mac[3], g->mac[4], g->mac[5]);
	emit(json_pack("{s:s,s:s,s:s,s:i}", "event", event, "iface", g->iface, "mac", mac,
		       "queues", g->nq));
}

#define ADD(x, n) __atomic_fetch_add(&(x), (n), __ATOMIC_RELAXED)
#define GET(x)    __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* Send back what is addressed to this guest, source and destination swapped. */
static void *
reflect(void *arg)
{
	struct worker *w = arg;
	struct guest *g = w->g;
	unsigned char buf[FRAME_MAX];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t cpus;

	CPU_ZERO(&cpus);
	CPU_SET(w->idx % (ncpu > 0 ? ncpu : 1), &cpus);
	pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
	while (!g->stop) {
		struct pollfd p = { .fd = w->sock, .events = POLLIN };
		unsigned char tmp[ETH_ALEN];
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = recv(w->sock, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0)
			continue;
		ADD(w->rx, 1);
		if (n < ETH_HLEN || memcmp(buf, g->mac, ETH_ALEN) != 0) {
			ADD(w->foreign, 1);
			continue;
		}
		memcpy(tmp, buf + ETH_ALEN, ETH_ALEN);
		memcpy(buf + ETH_ALEN, buf, ETH_ALEN);
		memcpy(buf, tmp, ETH_ALEN);
		if (send(w->sock, buf, (size_t)n, 0) == n)
			ADD(w->reflected, 1);
		else
			ADD(w->tx_errors, 1);
	}
	return NULL;
}

/* One reflecting thread per queue pair the interface runs. */
static int
workers_start(struct guest *g)
{
	g->stop = false;
	for (int i = 0; i < g->nq; i++) {
		struct worker *w = &g->w[i];

		w->g = g;
		w->idx = i;
		if ((w->sock = queue_socket(g)) < 0)
			return -1;
		if (pthread_create(&w->thread, NULL, reflect, w) != 0) {
			fail("cannot start a reflecting thread");
			close(w->sock);
			return -1;
		}
		w->running = true;
	}
	return 0;
}

static void
workers_stop(struct guest *g)
{
	g->stop = true;
	for (int i = 0; i < MAX_QUEUES; i++) {
		struct worker *w = &g->w[i];

		if (!w->running)
			continue;
		pthread_join(w->thread, NULL);
		close(w->sock);
		w->running = false;
	}
}

static void
check_carrier(struct guest *g)
{
	int c = read_sys_int(g, "carrier");

	if (c >= 0 && c != g->carrier) {
		if (g->carrier >= 0)
			emit(json_pack("{s:s,s:b}", "event", "carrier", "up", c == 1));
		g->carrier = c;
	}
}

/* Kernel messages logged since start-up, one record per read: "prio,seq,usec,flags;text". */
static void
read_kmsg(struct guest *g)
{
	char buf[1024];

	for (;;) {
		ssize_t n = read(g->kmsg, buf, sizeof(buf) - 1);
		char *text, *nl;

		if (n <= 0)
			return;
		buf[n] = '\0';
		text = strchr(buf, ';');
		if (text == NULL)
			continue;
		*text++ = '\0';
		nl = strchr(text, '\n');
		if (nl != NULL)
			*nl = '\0';
		g->kmsg_lines++;
		emit(json_pack("{s:s,s:i,s:s}", "event", "kmsg", "level", atoi(buf) & 7, "text",
			       text));
	}
}

static void
emit_stats(struct guest *g)
{
	uint64_t rx = 0, reflected = 0, tx_errors = 0, foreign = 0;
	json_t *per_queue = json_array();

	for (int i = 0; i < g->nq; i++) {
		struct worker *w = &g->w[i];

		rx += GET(w->rx);
		reflected += GET(w->reflected);
		tx_errors += GET(w->tx_errors);
		foreign += GET(w->foreign);
		json_array_append_new(per_queue, json_integer((json_int_t)GET(w->reflected)));
	}
	emit(json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:i,s:i,s:I,s:o}", "event", "stats", "rx",
		       (json_int_t)rx, "reflected", (json_int_t)reflected, "tx_errors",
		       (json_int_t)tx_errors, "foreign", (json_int_t)foreign, "kmsg_lines",
		       (json_int_t)g->kmsg_lines, "carrier", g->carrier, "carrier_changes",
		       read_sys_int(g, "carrier_changes"), "reloads", (json_int_t)g->reloads,
		       "reflected_per_queue", per_queue));
}

/* rmmod + insmod of the network driver: a device reset inside the vhost-user session. */
static void
reload(struct guest *g)
{
	const char *drv = g->modules[g->n_modules - 1];

	workers_stop(g);
	if (syscall(SYS_delete_module, drv, O_NONBLOCK) != 0) {
		fail("cannot unload %s: %s", drv, strerror(errno));
	} else {
		while (if_nametoindex(g->iface) != 0)
			usleep(10000);
	}
	if (load_module(g, drv) != 0 || iface_up(g) != 0 || workers_start(g) != 0)
		return;
	g->reloads++;
	g->carrier = -1;
	emit_ready(g, "reloaded");
}

static void
command(struct guest *g, char *line)
{
	line[strcspn(line, "\r\n")] = '\0';
	if (strcmp(line, "stats") == 0) {
		emit_stats(g);
	} else if (strcmp(line, "reload") == 0) {
		reload(g);
	} else if (strcmp(line, "reboot") == 0) {
		emit(json_pack("{s:s}", "event", "rebooting"));
		sync();
		reboot(RB_AUTOBOOT);
	} else if (line[0] != '\0') {
		fail("unknown command '%s' (stats, reload, reboot)", line);
	}
}

int
main(int argc, char **argv)
{
	static struct guest g = { .carrier = -1 };
	char line[256];
	size_t have = 0;
	uint64_t next_carrier = 0;

	if (argc < 4 || argc - 3 > MAX_MODULES) {
		fprintf(stderr, "usage: hitless-guest IFACE MODULE_DIR MODULE... (at most %d)\n",
			MAX_MODULES);
		return 2;
	}
	g.iface = argv[1];
	g.moddir = argv[2];
	for (int i = 3; i < argc; i++)
		g.modules[g.n_modules++] = argv[i];
	/* only what the kernel logs from now on: boot messages are not the upgrade's */
	g.kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (g.kmsg >= 0)
		lseek(g.kmsg, 0, SEEK_END);
	for (int i = 0; i < g.n_modules; i++)
		if (load_module(&g, g.modules[i]) != 0)
			return 1;
	if (iface_up(&g) != 0 || workers_start(&g) != 0)
		return 1;
	emit_ready(&g, "ready");
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	for (;;) {
		struct pollfd p[2] = { { .fd = 0, .events = POLLIN },
				       { .fd = g.kmsg, .events = POLLIN } };
		uint64_t now;

		poll(p, 2, 20);
		if (p[1].revents & POLLIN)
			read_kmsg(&g);
		now = now_ms();
		if (now >= next_carrier) {
			check_carrier(&g);
			next_carrier = now + 20;
		}
		if (p[0].revents & POLLIN) {
			ssize_t n = read(0, line + have, sizeof(line) - 1 - have);
			char *nl;

			if (n > 0)
				have += (size_t)n;
			line[have] = '\0';
			while ((nl = strchr(line, '\n')) != NULL) {
				*nl = '\0';
				command(&g, line);
				have -= (size_t)(nl + 1 - line);
				memmove(line, nl + 1, have + 1);
			}
			if (have == sizeof(line) - 1)
				have = 0; /* a line too long to be a command */
		}
	}
}
