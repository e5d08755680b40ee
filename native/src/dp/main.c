/* SPDX-License-Identifier: Apache-2.0
 * hitless-dp: one datapath generation. main() initialises EAL, the mempool, the FDB, the
 * forwarding stage, the optional uplink and the control socket, then runs the packet loop on
 * the main lcore until SIGTERM/SIGINT, and shuts down in reverse order.
 */
#define _GNU_SOURCE /* pthread_setaffinity_np, CPU_SET */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_version.h>

#include "dp.h"

#define DP_POOL_MBUFS 16383
#define DP_FDB_ENTRIES 4096

struct dp dp = { .up = { .port = -1, .live = -1 }, .peer = { .port = -1, .live = -1 } };

static void
on_signal(int sig)
{
	(void)sig;
	dp.quit = true;
}

/* EAL needs a distinct --file-prefix per generation; supply "hl-dp-<gen-id>" when the caller
 * did not, so two generations on one host never collide. */
static char **
with_file_prefix(int *argc, char **argv)
{
	const char *gen = NULL;
	int dashdash = *argc;
	char **out;
	static char prefix[64];

	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "--") == 0 && dashdash == *argc)
			dashdash = i;
		if (i < dashdash && strncmp(argv[i], "--file-prefix", 13) == 0)
			return argv;
		if (i > dashdash && strcmp(argv[i], "--gen-id") == 0 && i + 1 < *argc)
			gen = argv[i + 1];
	}
	if (gen == NULL || !hl_valid_name(gen))
		return argv;
	out = calloc((size_t)*argc + 2, sizeof(*out));
	if (out == NULL)
		return argv;
	snprintf(prefix, sizeof(prefix), "--file-prefix=hl-dp-%s", gen);
	out[0] = argv[0];
	out[1] = prefix;
	memcpy(out + 2, argv + 1, (size_t)(*argc - 1) * sizeof(*out));
	(*argc)++;
	return out;
}

/* The CPUs the process was given (taskset, cgroups) before EAL pinned the main thread. */
static cpu_set_t startup_cpus;

/* The housekeeping CPUs: those the process was started with, less the packet loop's (the main
 * lcore's cpuset). Empty when that leaves none (one CPU: everything shares it). */
static void
housekeeping_cpus(cpu_set_t *set)
{
	rte_cpuset_t loop = rte_lcore_cpuset(rte_get_main_lcore());

	CPU_ZERO(set);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &startup_cpus) && !CPU_ISSET(c, &loop))
			CPU_SET(c, set);
}

/* Run the calling thread on the housekeeping CPUs, when there are any. */
static void
off_the_loop_cpu(const char *who)
{
	cpu_set_t set;

	housekeeping_cpus(&set);
	if (CPU_COUNT(&set) > 0 && pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
		fprintf(stderr, "hitless-dp: %s stays on the loop's CPU\n", who);
}

/* The control thread runs beside the packet loop, not on its CPU(s), as DPDK's own control
 * threads (vhost messages, interrupts) do: a command that does real work (lib/swap's dlopen)
 * would otherwise take the loop's CPU from it for as long as it runs. It adds FDB entries,
 * and rte_hash's multi-writer mode needs an lcore id: it registers with EAL. */
static void
register_ctl_thread(void *arg)
{
	(void)arg;
	off_the_loop_cpu("control thread");
	if (rte_thread_register() != 0)
		fprintf(stderr, "hitless-dp: control thread not registered with EAL: %s\n",
			rte_strerror(rte_errno));
}

/* Each feature registers its own control commands, in this order. */
static int (*const ctl_features[])(struct ctl_registry *) = {
	dp_stats_ctl_register, dp_vm_ctl_register, dp_fdb_ctl_register, dp_peer_ctl_register,
	dp_fwd_ctl_register,
};

static int
make_dirs(void)
{
	char vhost[sizeof(dp.run_dir) + 16];

	snprintf(vhost, sizeof(vhost), "%s/vhost", dp.run_dir);
	if ((mkdir(dp.run_dir, 0750) != 0 && errno != EEXIST) ||
	    (mkdir(vhost, 0750) != 0 && errno != EEXIST))
		return -errno;
	return 0;
}

/* The heartbeat page the keeper watches (common/heartbeat.h). The packet loop writes it every
 * iteration, so it must never be a page of a file on disk: a write to a file page under
 * writeback can block the writer for as long as the disk takes (hundreds of milliseconds on a
 * busy host). It is a memfd, kept open, that the keeper reaches through the symlink
 * <run-dir>/heartbeat -> /proc/<pid>/fd/<fd> (gone with the process). */
static int
open_heartbeat(void)
{
	char path[sizeof(dp.run_dir) + 16], target[64];
	void *p;
	int fd;

	fd = memfd_create("hitless-heartbeat", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, 4096) != 0) {
		close(fd);
		return -errno;
	}
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		close(fd);
		return -errno;
	}
	snprintf(path, sizeof(path), "%s/" HL_HB_FILE, dp.run_dir);
	snprintf(target, sizeof(target), "/proc/%d/fd/%d", (int)getpid(), fd);
	unlink(path);
	if (symlink(target, path) != 0) {
		munmap(p, 4096);
		close(fd);
		return -errno;
	}
	dp.hb = p;
	dp.hb->pid = (uint32_t)getpid();
	dp.hb->beat = 0;
	/* held by this thread, the packet loop's, until it exits (heartbeat.h) */
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init((pthread_mutex_t *)&dp.hb->alive, &ma);
	pthread_mutexattr_destroy(&ma);
	if (pthread_mutex_lock((pthread_mutex_t *)&dp.hb->alive) == 0)
		dp.hb->features |= HL_HB_ALIVE;
	dp.hb->magic = HL_HB_MAGIC;
	return 0;
}

static void
write_pidfile(void)
{
	char path[sizeof(dp.run_dir) + 16];
	int rc;

	snprintf(path, sizeof(path), "%s/dp.pid", dp.run_dir);
	if ((rc = hl_write_pidfile(path)) != 0)
		fprintf(stderr, "hitless-dp: %s: %s\n", path, strerror(-rc));
}

int
main(int argc, char **argv)
{
	char path[sizeof(dp.run_dir) + 16];
	int n, rc;

	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("hitless-dp %s (%s)\n", HITLESS_RELEASE, rte_version());
		return 0;
	}
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		dp_usage(argv[0]);
		return 0;
	}
	argv = with_file_prefix(&argc, argv);
	if (sched_getaffinity(0, sizeof(startup_cpus), &startup_cpus) != 0)
		CPU_ZERO(&startup_cpus); /* unknown: the control thread keeps EAL's placement */
	n = rte_eal_init(argc, argv);
	if (n < 0)
		rte_exit(EXIT_FAILURE, "hitless-dp: EAL init failed: %s\n", rte_strerror(rte_errno));
	/* EAL pinned this thread to the packet loop's CPU, which another generation may be using
	 * to forward this host's traffic right now: the rest of the start-up (the mempool, the
	 * ports, the stage) runs on the housekeeping CPUs, and the loop takes its CPU when it starts */
	off_the_loop_cpu("start-up");
	argc -= n;
	argv += n;
	argv[0] = (char *)"hitless-dp";
	if (dp_parse_args(argc, argv) != 0) {
		dp_usage("hitless-dp");
		rte_eal_cleanup();
		return 2;
	}
	dp.started_ns = hl_now_ns();
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);

	if ((rc = make_dirs()) != 0)
		rte_exit(EXIT_FAILURE, "hitless-dp: cannot create %s: %s\n", dp.run_dir,
			 strerror(-rc));
	dp.pool = rte_pktmbuf_pool_create("dp_pool", DP_POOL_MBUFS, 256, 0,
					  RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (dp.pool == NULL)
		rte_exit(EXIT_FAILURE, "hitless-dp: cannot create mbuf pool (-m too small?)\n");
	dp.fdb = dp_fdb_create("fdb", DP_FDB_ENTRIES);
	dp.announce_q = rte_ring_create("announce", 64, rte_socket_id(), RING_F_SC_DEQ);
	if (dp.fdb == NULL || dp.announce_q == NULL)
		rte_exit(EXIT_FAILURE, "hitless-dp: cannot create FDB or rings\n");
	if (dp_fwd_load(dp.fwd_path) != 0)
		rte_exit(EXIT_FAILURE, "hitless-dp: no forwarding stage\n");
	/* the heartbeat page first: the peer link's counters live there (heartbeat.h) */
	if ((rc = open_heartbeat()) != 0)
		rte_exit(EXIT_FAILURE, "hitless-dp: heartbeat page: %s\n", strerror(-rc));
	if (dp.uplink_iface[0] != '\0' && (rc = dp_uplink_init(dp.uplink_iface)) != 0)
		rte_exit(EXIT_FAILURE, "hitless-dp: uplink %s: %s\n", dp.uplink_iface,
			 strerror(rc < 0 ? -rc : rc));
	if (dp.peer_sock[0] != '\0' && (rc = dp_peer_init(dp.peer_sock, dp.peer_server)) != 0)
		rte_exit(EXIT_FAILURE, "hitless-dp: peer link %s: %s\n", dp.peer_sock,
			 strerror(rc < 0 ? -rc : rc));

	/* every page this process has (its memory pool's buffers above all) mapped and kept in
	 * now, not faulted in by the loop as it first uses each (hundreds of page faults in the
	 * first milliseconds after a generation takes its first VM); the guests' memory, mapped
	 * later, is not locked: this comes before the control socket, so before any VM can
	 * connect (prefault.c maps what they touched) */
	if (mlockall(MCL_CURRENT) != 0)
		fprintf(stderr, "hitless-dp: memory not locked (%s): the loop faults pages in as it "
			"first touches them\n", strerror(errno));

	/* the pid file and the heartbeat page exist before the control socket does: whoever sees
	 * the socket (the agent, then the keeper's gen/attach) finds them */
	write_pidfile();
	snprintf(path, sizeof(path), "%s/ctl.sock", dp.run_dir);
	dp.ctl = ctl_server_new(path, 0);
	if (dp.ctl == NULL)
		rte_exit(EXIT_FAILURE, "hitless-dp: control socket %s: %s\n", path,
			 strerror(errno));
	/* a command that does not register (its name taken or malformed) stops the start */
	for (size_t i = 0; i < RTE_DIM(ctl_features); i++)
		if ((rc = ctl_features[i](ctl_server_registry(dp.ctl))) != 0)
			rte_exit(EXIT_FAILURE, "hitless-dp: control command %s not registered: %s\n",
				 ctl_registry_refused(ctl_server_registry(dp.ctl)), strerror(-rc));
	ctl_server_on_thread_start(dp.ctl, register_ctl_thread, NULL);
	if (dp_telemetry_register() != 0)
		fprintf(stderr, "hitless-dp: telemetry commands not registered\n");
	if (ctl_server_start(dp.ctl) != 0)
		rte_exit(EXIT_FAILURE, "hitless-dp: cannot start control thread\n");

	printf("{\"event\":\"ready\",\"gen_id\":\"%s\",\"version\":\"%s\",\"pid\":%d,"
	       "\"ctl\":\"%s\",\"lcore\":%u}\n",
	       dp.gen_id, HITLESS_RELEASE, (int)getpid(), path, rte_lcore_id());
	fflush(stdout);

	rte_cpuset_t loop_cpus = rte_lcore_cpuset(rte_get_main_lcore());
	if (pthread_setaffinity_np(pthread_self(), sizeof(loop_cpus), &loop_cpus) != 0)
		rte_exit(EXIT_FAILURE, "hitless-dp: cannot pin the packet loop to its lcore's CPU\n");
	dp.loop_thread = pthread_self();
	dp_loop(NULL);

	/* shutdown: stop taking commands, release every VM, then the ports */
	ctl_server_free(dp.ctl);
	dp.ctl = NULL;
	dp_vm_del_all();
	dp_ext_close(&dp.up);
	dp_ext_close(&dp.peer);
	rte_ring_free(dp.announce_q);
	dp_fdb_free(dp.fdb);
	rte_mempool_free(dp.pool);
	snprintf(path, sizeof(path), "%s/dp.pid", dp.run_dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/" HL_HB_FILE, dp.run_dir);
	unlink(path);
	rte_eal_cleanup();
	fprintf(stderr, "hitless-dp %s: stopped\n", dp.gen_id);
	return 0;
}
