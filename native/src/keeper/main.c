/* SPDX-License-Identifier: Apache-2.0
 * hitless-keeper: one per host. Owns the VMs' vhost-user sockets and moves their live sessions
 * between datapath generations. main() parses options, opens the control socket, and runs the
 * relay loop until SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "keeper.h"

#ifndef HITLESS_RELEASE
#define HITLESS_RELEASE "0.0.0"
#endif

struct keeper kp = { .standby = -1, .watch_us = 1000, .stall_us = 2000 };
/* --take-over STATE:READY (keeper/upgrade, upgrade.c): -1 when started afresh */
static int state_fd = -1, ready_fd = -1;
/* --fdstore: the state and its fds kept in systemd's fd store (fdstore.c); restored: this
 * keeper took its sessions from there (systemd started it again after a crash) */
static bool fdstore, restored;
/* SCHED_FIFO priority of the keeper's threads (0: normal) */
static uint32_t rt_prio = 10;

static void
on_signal(int sig)
{
	(void)sig;
	kp.quit = true;
}

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: hitless-keeper --run-dir DIR [--watch-us N] [--stall-us N] [--rt-prio N]\n"
		"       hitless-keeper --version\n"
		"  --run-dir DIR   control socket DIR/ctl.sock, VM sockets DIR/vhost/<vm>.sock\n"
		"  --watch-us N    how often generation heartbeats are checked (default 1000)\n"
		"  --stall-us N    heartbeat age that triggers the exit check (default 2000)\n"
		"  --rt-prio N     SCHED_FIFO priority of every keeper thread (default 10; 0: normal\n"
		"                  priority): a switch is not held off by busy neighbours on its core\n"
		"  --fdstore       keep the sessions in systemd's fd store, and take them back from\n"
		"                  it when started again (a Type=notify unit with FileDescriptorStoreMax=)\n"
		"  --take-over S:R started by a running keeper's keeper/upgrade: its state in fd S,\n"
		"                  'ready PID VERSION' or 'refused: why' to fd R\n");
}

static int
parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "run-dir", required_argument, NULL, 'r' },
		{ "watch-us", required_argument, NULL, 'w' },
		{ "stall-us", required_argument, NULL, 's' },
		{ "take-over", required_argument, NULL, 't' },
		{ "fdstore", no_argument, NULL, 'F' },
		{ "rt-prio", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (strlen(optarg) >= sizeof(kp.run_dir) || optarg[0] != '/') {
				fprintf(stderr, "hitless-keeper: --run-dir: an absolute path under %zu bytes\n",
					sizeof(kp.run_dir));
				return -1;
			}
			snprintf(kp.run_dir, sizeof(kp.run_dir), "%s", optarg);
			break;
		case 'w':
			if (hl_parse_u32("hitless-keeper", "--watch-us", optarg, 100, 1000000, &kp.watch_us) != 0)
				return -1;
			break;
		case 's':
			if (hl_parse_u32("hitless-keeper", "--stall-us", optarg, 100, 10000000, &kp.stall_us) != 0)
				return -1;
			break;
		case 't':
			if (sscanf(optarg, "%d:%d", &state_fd, &ready_fd) != 2 || state_fd < 3 ||
			    ready_fd < 3 || state_fd == ready_fd) {
				fprintf(stderr, "hitless-keeper: --take-over: two fds, STATE:READY\n");
				return -1;
			}
			break;
		case 'F':
			fdstore = true;
			break;
		case 'p':
			if (hl_parse_u32("hitless-keeper", "--rt-prio", optarg, 0, 99, &rt_prio) != 0)
				return -1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hitless-keeper: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (kp.run_dir[0] == '\0') {
		fprintf(stderr, "hitless-keeper: --run-dir is required\n");
		return -1;
	}
	return 0;
}

/* Start-up failed: a keeper taking over tells the running one why (it then keeps serving). */
__attribute__((format(printf, 1, 2))) static int
refuse(const char *fmt, ...)
{
	va_list ap;

	if (ready_fd < 0)
		return 1;
	va_start(ap, fmt);
	dprintf(ready_fd, "refused: ");
	vdprintf(ready_fd, fmt, ap);
	dprintf(ready_fd, "\n");
	va_end(ap);
	return 3;
}

int
main(int argc, char **argv)
{
	char path[sizeof(kp.run_dir) + 16];
	int rc;

	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("hitless-keeper %s\n", HITLESS_RELEASE);
		return 0;
	}
	if (parse_args(argc, argv) != 0) {
		usage(stderr);
		return 2;
	}
	/* before any thread starts: the control thread and the pacer inherit it. Nothing in the
	 * keeper spins (it waits in epoll, poll, condition variables), so its threads run only
	 * when there is something to do, and then at once */
	hl_rt_self("hitless-keeper", rt_prio);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	pthread_mutex_init(&kp.lock, NULL);
	if (fdstore) {
		char why[300];

		if (kp_fdstore_start(why, sizeof(why)) != 0) {
			fprintf(stderr, "hitless-keeper: %s\n", why);
			return refuse("%s", why);
		}
		/* before this process opens any fd: the stored ones go back to their numbers */
		if (state_fd < 0) {
			rc = kp_fdstore_restore(&state_fd, why, sizeof(why));
			if (rc < 0)
				fprintf(stderr, "hitless-keeper: systemd's fd store not taken (%s): starting "
					"with no session\n", why);
			restored = rc > 0;
		}
	}

	snprintf(path, sizeof(path), "%s/vhost", kp.run_dir);
	if ((mkdir(kp.run_dir, 0750) != 0 && errno != EEXIST) ||
	    (mkdir(path, 0750) != 0 && errno != EEXIST)) {
		fprintf(stderr, "hitless-keeper: cannot create %s: %s\n", path, strerror(errno));
		return 1;
	}
	if ((rc = kp_ev_init()) != 0) {
		fprintf(stderr, "hitless-keeper: event loop: %s\n", strerror(-rc));
		return refuse("event loop: %s", strerror(-rc));
	}
	if (state_fd >= 0) {
		/* nothing here may remove or close what the running keeper still serves with */
		char why[400];
		int cfd = -1;

		if (kp_take_over(state_fd, &cfd, why, sizeof(why)) != 0) {
			if (restored) {
				/* not met again: systemd's next start of this keeper is an empty one */
				fprintf(stderr, "hitless-keeper: the sessions in systemd's fd store cannot "
					"be taken back: %s\n", why);
				kp_fdstore_forget();
			}
			return refuse("%s", why);
		}
		snprintf(path, sizeof(path), "%s/ctl.sock", kp.run_dir);
		kp.ctl = ctl_server_adopt(path, cfd, 0);
	} else {
		snprintf(path, sizeof(path), "%s/ctl.sock", kp.run_dir);
		kp.ctl = ctl_server_new(path, 0);
	}
	if (kp.ctl == NULL) {
		fprintf(stderr, "hitless-keeper: control socket %s: %s\n", path, strerror(errno));
		return refuse("control socket %s: %s", path, strerror(errno));
	}
	if ((rc = kp_ctl_register(ctl_server_registry(kp.ctl))) != 0) {
		fprintf(stderr, "hitless-keeper: control command %s not registered: %s\n",
			ctl_registry_refused(ctl_server_registry(kp.ctl)), strerror(-rc));
		return refuse("control command %s not registered", ctl_registry_refused(ctl_server_registry(kp.ctl)));
	}
	/* the control thread runs before anyone is told this keeper serves; a command it takes
	 * meanwhile waits for kp.lock, held until then */
	pthread_mutex_lock(&kp.lock);
	if (ctl_server_start(kp.ctl) != 0) {
		fprintf(stderr, "hitless-keeper: cannot start the control thread\n");
		return refuse("cannot start the control thread");
	}
	/* the pid file names this process before anyone is told it serves */
	snprintf(path, sizeof(path), "%s/keeper.pid", kp.run_dir);
	if ((rc = hl_write_pidfile(path)) != 0)
		fprintf(stderr, "hitless-keeper: %s: %s\n", path, strerror(-rc));
	if (ready_fd < 0)
		/* Type=notify under systemd (nothing elsewhere): started and serving */
		sd_notifyf(0, "READY=1\nSTATUS=serving (keeper %s%s)", HITLESS_RELEASE,
			   restored ? ", sessions taken back from systemd's fd store" : "");
	if (ready_fd < 0)
		kp_fdstore_sync(true); /* (an upgrade's new keeper: once the old one handed over) */
	if (ready_fd >= 0) {
		/* the old keeper hands over on this line, names this one the unit's main process
		 * (under systemd), and exits */
		dprintf(ready_fd, "ready %d %s\n", (int)getpid(), HITLESS_RELEASE);
		close(ready_fd);
		ready_fd = -1;
	}
	pthread_mutex_unlock(&kp.lock);
	kp_pace_thaw();
	printf("{\"event\":\"ready\",\"version\":\"%s\",\"pid\":%d,\"ctl\":\"%s/ctl.sock\"%s}\n",
	       HITLESS_RELEASE, (int)getpid(), kp.run_dir,
	       restored ? ",\"restored\":true" : state_fd >= 0 ? ",\"took_over\":true" : "");
	fflush(stdout);

	kp_relay_run();
	/* (a keeper/upgrade under way when a signal came holds kp.lock until it is decided) */
	pthread_mutex_lock(&kp.lock);
	pthread_mutex_unlock(&kp.lock);
	if (kp.handed_over) {
		/* the new keeper serves every socket: remove nothing, close nothing it needs (they
		 * are its as well); the control thread answers keeper/upgrade and ends */
		ctl_server_free(kp.ctl);
		fprintf(stderr, "hitless-keeper: handed over to pid %d\n", (int)kp.successor);
		fflush(stderr);
		_exit(0);
	}
	kp_pace_stop();

	ctl_server_free(kp.ctl);
	kp.ctl = NULL;
	pthread_mutex_lock(&kp.lock);
	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use)
			kp_vm_del(kp.vms[v].name, &(struct ctl_error){ "", "" });
	pthread_mutex_unlock(&kp.lock);
	unlink(path);
	fprintf(stderr, "hitless-keeper: stopped\n");
	return 0;
}
