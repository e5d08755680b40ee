/* SPDX-License-Identifier: Apache-2.0
 * Replacing the keeper under live sessions (DESIGN.md §14): keeper/upgrade {binary}.
 *
 * Packets never pass through the keeper; what it holds is sockets and session state. So the
 * running keeper, holding kp.lock (no frontend request is half relayed, none is read):
 *   1. writes its state as JSON into a memfd (format KP_STATE_FORMAT): generations, VMs,
 *      each session's negotiated state with the fd numbers of its sockets, memory and
 *      eventfds, the pace ports, the control socket;
 *   2. forks; the child clears close-on-exec on exactly those fds and execs the new binary
 *      with --take-over STATE:READY. The fd numbers are the same in the new program;
 *   3. the new keeper reads the state, checks every fd it names is open, maps what the old one
 *      mapped, and says "ready PID VERSION" on the READY pipe (or "refused: why", or dies);
 *   4. only on "ready" does the old keeper hand over (under systemd it first makes the new
 *      keeper the unit's main process, MAINPID=, and waits until systemd has read it): it
 *      stops accepting control connections,
 *      answers this request, closes its control clients (they connect again to the same path,
 *      served by the new keeper) and exits without touching a socket file. On anything else
 *      (no ready line within KP_UPGRADE_WAIT_MS, a refusal, an exit) the child is killed and
 *      reaped, the memfd and pipe are closed, and the old keeper carries on as before.
 * Fork-then-exec rather than exec in place: a new binary that cannot run, reads another state
 * format or crashes while taking over costs nothing, since the old process still holds every
 * socket and its state. The price is a new pid (keeper.pid is rewritten by the new keeper
 * before it says ready).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "keeper.h"

#ifndef KP_STATE_FORMAT
#define KP_STATE_FORMAT 1
#endif
#define KP_UPGRADE_WAIT_MS 10000

#ifndef HITLESS_RELEASE
#define HITLESS_RELEASE "0.0.0"
#endif

int
kp_state_format(void)
{
	return KP_STATE_FORMAT;
}

/* --- the running keeper: its state out ----------------------------------------------- */

/* Note fd as one the new keeper keeps (when it is one); returns it for the state. */
static int
keep(struct kp_fdlist *fl, int fd)
{
	if (fd < 0)
		return fd;
	if (fl->n == fl->cap) {
		int cap = fl->cap ? fl->cap * 2 : 64, *p = realloc(fl->fd, sizeof(int) * (size_t)cap);
		if (p == NULL)
			return fd; /* the child then finds it closed and refuses */
		fl->fd = p;
		fl->cap = cap;
	}
	fl->fd[fl->n++] = fd;
	return fd;
}

/* Append v (a pack that failed is NULL): false once any append failed, and the upgrade is not
 * attempted with a state that would leave something out. */
static bool state_ok;

static void
add(json_t *arr, json_t *v)
{
	if (v == NULL || json_array_append_new(arr, v) != 0)
		state_ok = false;
}

static int
keep_cb(void *fl, int fd)
{
	return keep(fl, fd);
}

static json_t *
ring_json(const struct kp_vring *r, struct kp_fdlist *fl)
{
	return json_pack("{s:b,s:b,s:b,s:b,s:b,s:i,s:i,s:[i,i,I,I,I,I],s:i,s:i,s:i,s:b,s:b,s:b,s:b,s:b}",
			 "num_set", r->num_set, "addr_set", r->addr_set, "kick_set", r->kick_set,
			 "call_set", r->call_set, "err_set", r->err_set, "num", (int)r->num,
			 "base", (int)r->base, "addr", (int)r->addr.index, (int)r->addr.flags,
			 (json_int_t)r->addr.desc_user_addr, (json_int_t)r->addr.used_user_addr,
			 (json_int_t)r->addr.avail_user_addr, (json_int_t)r->addr.log_guest_addr,
			 "kick", keep(fl, r->kick), "call", keep(fl, r->call), "err", keep(fl, r->err),
			 "kick_nofd", r->kick_nofd, "call_nofd", r->call_nofd, "enabled", r->enabled,
			 "started", r->started, "stopped", r->stopped);
}

static json_t *
session_json(const struct kp_state *st, struct kp_fdlist *fl)
{
	json_t *regions = json_array(), *rings = json_array();

	for (uint32_t i = 0; st->mem_set && i < st->mem.nregions; i++) {
		const struct vu_region *r = &st->mem.regions[i];
		add(regions, json_pack("[I,I,I,I,i,b]", (json_int_t)r->guest_phys_addr,
							 (json_int_t)r->memory_size, (json_int_t)r->userspace_addr,
							 (json_int_t)r->mmap_offset, keep(fl, st->mem_fds[i]),
							 st->maps[i] != NULL));
	}
	for (uint32_t i = 0; i < st->nvrings; i++)
		add(rings, ring_json(&st->vr[i], fl));
	return json_pack("{s:b,s:b,s:b,s:b,s:b,s:b,s:b,s:I,s:I,s:I,s:I,s:o,s:o,s:I}",
			 "features_set", st->features_set, "pf_set", st->pf_set, "owner", st->owner,
			 "mem_set", st->mem_set, "mtu_set", st->mtu_set, "status_set", st->status_set,
			 "log_set", st->log_set, "features", (json_int_t)st->features,
			 "protocol_features", (json_int_t)st->protocol_features,
			 "mtu", (json_int_t)st->mtu, "status", (json_int_t)st->status,
			 "regions", regions, "rings", rings, "epoch", (json_int_t)st->epoch);
}

static json_t *
vm_json(const struct kp_vm *vm, struct kp_fdlist *fl)
{
	json_t *b = json_array(), *blfd = json_array(), *mac = json_null();

	for (int gi = 0; gi < KP_MAX_GENS; gi++) {
		const struct kp_bconn *c = &vm->b[gi];
		add(b, json_pack("{s:i,s:I,s:b,s:I,s:I}", "fd", keep(fl, c->fd),
						   "epoch", (json_int_t)c->epoch, "preloaded", c->preloaded,
						   "features", (json_int_t)c->features,
						   "protocol_features", (json_int_t)c->protocol_features));
		add(blfd, json_integer(keep(fl, vm->blfd[gi])));
	}
	if (vm->has_mac)
		mac = json_pack("[i,i,i,i,i,i]", vm->mac[0], vm->mac[1], vm->mac[2], vm->mac[3],
				vm->mac[4], vm->mac[5]);
	return json_pack("{s:i,s:s,s:s,s:b,s:i,s:i,s:I,s:i,s:i,s:o,s:o,s:i,s:I,s:[I,I,I,I,I,I],s:o,s:s,s:o}",
			 "slot", kp_vm_index(vm), "name", vm->name, "sock", vm->sock, "client", vm->client,
			 "lfd", keep(fl, vm->lfd), "ffd", keep(fl, vm->ffd),
			 "next_connect_ns", (json_int_t)vm->next_connect_ns, "serving", vm->serving,
			 "home", vm->home, "b", b, "blfd", blfd, "want_preload", (int)vm->want_preload,
			 "last_frontend_ns", (json_int_t)vm->last_frontend_ns,
			 "counters", (json_int_t)vm->connects, (json_int_t)vm->disconnects,
			 (json_int_t)vm->handoffs, (json_int_t)vm->failovers, (json_int_t)vm->refused,
			 (json_int_t)vm->announces, "mac", mac, "last_anomaly", vm->last_anomaly,
			 "session", session_json(&vm->st, fl));
}

static json_t *
state_json(struct kp_fdlist *fl)
{
	json_t *gens = json_array(), *vms = json_array();

	for (int gi = 0; gi < KP_MAX_GENS; gi++) {
		const struct kp_gen *g = &kp.gens[gi];
		if (g->in_use)
			add(gens, json_pack("{s:i,s:s,s:s,s:i,s:b,s:b,s:o}", "slot", gi,
							      "name", g->name, "run_dir", g->run_dir,
							      "pid", (int)g->pid, "listen", g->listen,
							      "dead", g->dead, "pace", kp_pace_save(gi, keep_cb, fl)));
	}
	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use)
			add(vms, vm_json(&kp.vms[v], fl));
	return json_pack("{s:i,s:s,s:i,s:s,s:i,s:i,s:i,s:i,s:i,s:o,s:o}", "format", KP_STATE_FORMAT,
			 "release", HITLESS_RELEASE, "from_pid", (int)getpid(), "run_dir", kp.run_dir,
			 "watch_us", (int)kp.watch_us, "stall_us", (int)kp.stall_us,
			 "standby", kp.standby, "debug_pause_ms", (int)kp.debug_pause_ms,
			 "ctl_fd", keep(fl, ctl_server_listen_fd(kp.ctl)), "gens", gens, "vms", vms);
}

char *
kp_state_text(struct kp_fdlist *fl)
{
	json_t *state;
	char *text;

	state_ok = true;
	state = state_json(fl);
	text = state && state_ok ? json_dumps(state, JSON_COMPACT) : NULL;
	json_decref(state);
	return text;
}

/* Write all of s to fd. 0 or -errno. */
static int
write_all(int fd, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The child's first line on the ready pipe, waiting until deadline: 1 (a line), 0 (EOF: the
 * child is gone), -ETIMEDOUT. */
static int
read_line(int fd, char *buf, size_t len, uint64_t deadline)
{
	size_t got = 0;

	buf[0] = '\0';
	for (;;) {
		uint64_t now = hl_now_ns();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int rc;

		if (now >= deadline)
			return -ETIMEDOUT;
		rc = poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			continue;
		n = read(fd, buf + got, len - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return got > 0 ? 1 : 0;
		got += (size_t)n;
		buf[got] = '\0';
		char *nl = strchr(buf, '\n');
		if (nl != NULL || got == len - 1) {
			if (nl)
				*nl = '\0';
			return 1;
		}
	}
}

/* Under systemd (a notify socket): make the new keeper the unit's main process, and wait
 * until systemd has read that (a barrier), so this one's exit is not taken for the unit's.
 * 0, or -errno; nothing to do (0) outside systemd. */
static int
become_main(pid_t pid, const char *version)
{
	int rc;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	rc = sd_notifyf(0, "MAINPID=%d\nSTATUS=serving (keeper %s, took over from pid %d)",
			(int)pid, version, (int)getpid());
	if (rc <= 0)
		return rc < 0 ? rc : -ENOTCONN;
	rc = sd_notify_barrier(0, 5 * 1000000ull);
	if (rc < 0) {
		/* not known whether systemd read it: this one stays the main process */
		sd_notifyf(0, "MAINPID=%d", (int)getpid());
		sd_notify_barrier(0, 5 * 1000000ull);
	}
	return rc;
}

/* The child between fork and exec: only async-signal-safe calls. The fds the state names (and
 * the state and ready pipe) stay open across exec; everything else is close-on-exec already. */
static void
child_exec(const char *binary, char *const argv[], const struct kp_fdlist *fl, int memfd, int ready)
{
	static const char msg[] = "refused: the binary could not be executed (execv failed)\n";

	for (int i = 0; i < fl->n; i++)
		fcntl(fl->fd[i], F_SETFD, 0);
	fcntl(memfd, F_SETFD, 0);
	fcntl(ready, F_SETFD, 0);
	execv(binary, argv);
	if (write(ready, msg, sizeof(msg) - 1) < 0)
		_exit(126);
	_exit(127);
}

int
kp_upgrade(const char *binary, json_t **result, struct ctl_error *err)
{
	uint64_t t0 = hl_now_ns();
	struct kp_fdlist fl = { 0 };
	struct stat sb;
	char line[512], spec[32], why[600] = "";
	int memfd = -1, ready[2] = { -1, -1 }, status = 0, rc, sessions = 0, vms = 0;
	char *text;
	pid_t pid;

	if (kp.quit)
		return ctl_fail(err, "stopping", "this keeper is stopping");
	/* a systemd unit's main process that exits takes the unit, and the new keeper, with it,
	 * unless it first names the new one the unit's main process: that needs the notify
	 * socket of a Type=notify unit (the host package's hitless-keeper.service is one) */
	if (getenv("INVOCATION_ID") != NULL && getenv("NOTIFY_SOCKET") == NULL)
		return ctl_fail(err, "unsupported", "this keeper runs as a systemd service with no "
				"notify socket (its unit is not Type=notify): the new keeper could not "
				"become its main process; the keeper keeps running");
	if (binary[0] != '/')
		return ctl_fail(err, "invalid-args", "binary: an absolute path, not '%.200s'", binary);
	if (stat(binary, &sb) != 0)
		return ctl_fail(err, "no-binary", "%.200s: %s (the keeper keeps running)", binary,
				strerror(errno));
	if (!S_ISREG(sb.st_mode) || access(binary, X_OK) != 0)
		return ctl_fail(err, "not-executable", "%.200s is not an executable file (the keeper "
				"keeps running)", binary);

	kp_pace_freeze();
	text = kp_state_text(&fl);
	if (text == NULL) {
		snprintf(why, sizeof(why), "this keeper's state could not be written as JSON");
		goto fail;
	}
	memfd = memfd_create("hitless-keeper-state", MFD_CLOEXEC);
	if (memfd < 0 || write_all(memfd, text, strlen(text)) != 0 ||
	    lseek(memfd, 0, SEEK_SET) != 0 || pipe2(ready, O_CLOEXEC) != 0) {
		snprintf(why, sizeof(why), "the state could not be written: %s", strerror(errno));
		goto fail;
	}
	snprintf(spec, sizeof(spec), "%d:%d", memfd, ready[1]);
	{
		char *const argv[] = { (char *)binary, "--run-dir", kp.run_dir, "--take-over", spec,
				       kp_fdstore_enabled() ? "--fdstore" : NULL, NULL };
		/* with systemd's fd store: the new keeper goes on with what is stored, and where */
		char *names = kp_fdstore_enabled() ? kp_fdstore_names() : NULL;

		if (names != NULL)
			setenv(KP_FDSTORE_ENV, names, 1);
		pid = fork();
		if (pid == 0)
			child_exec(binary, argv, &fl, memfd, ready[1]);
		if (names != NULL)
			unsetenv(KP_FDSTORE_ENV);
		free(names);
	}
	if (pid < 0) {
		snprintf(why, sizeof(why), "fork: %s", strerror(errno));
		goto fail;
	}
	close(ready[1]);
	ready[1] = -1;
	rc = read_line(ready[0], line, sizeof(line), t0 + KP_UPGRADE_WAIT_MS * 1000000ull);
	if (rc == 1 && strncmp(line, "ready ", 6) == 0) {
		char version[64] = "";
		int npid = 0;

		if (sscanf(line + 6, "%d %63s", &npid, version) != 2 || npid != pid)
			snprintf(why, sizeof(why), "it said '%.200s', not 'ready %d VERSION'", line,
				 (int)pid);
		else if ((rc = become_main(pid, version)) < 0)
			snprintf(why, sizeof(why), "systemd did not take it as the unit's main process: "
				 "%s (killed)", strerror(-rc));
		else
			goto handed_over;
	} else if (rc == 1) {
		snprintf(why, sizeof(why), "%.500s", strncmp(line, "refused: ", 9) == 0 ? line + 9 : line);
	} else if (rc == -ETIMEDOUT) {
		snprintf(why, sizeof(why), "it did not say it was ready within %d ms (killed)",
			 KP_UPGRADE_WAIT_MS);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (why[0] == '\0')
		snprintf(why, sizeof(why), "it exited before it was ready (%s %d)",
			 WIFSIGNALED(status) ? "signal" : "exit status",
			 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
fail:
	/* the child may have named itself in keeper.pid before it was refused */
	{
		char path[sizeof(kp.run_dir) + 16];

		snprintf(path, sizeof(path), "%s/keeper.pid", kp.run_dir);
		hl_write_pidfile(path);
	}
	if (memfd >= 0)
		close(memfd);
	for (int i = 0; i < 2; i++)
		if (ready[i] >= 0)
			close(ready[i]);
	free(text);
	free(fl.fd);
	kp_pace_thaw();
	return ctl_fail(err, "upgrade-failed", "%.200s did not take over: %.180s; this keeper "
			"keeps every session", binary, why);

handed_over:
	for (int v = 0; v < KP_MAX_VMS; v++) {
		vms += kp.vms[v].in_use;
		sessions += kp.vms[v].in_use && kp.vms[v].ffd >= 0;
	}
	*result = json_pack("{s:i,s:i,s:s,s:I,s:i,s:i,s:i,s:i}", "pid", (int)pid, "old_pid",
			    (int)getpid(), "version", strrchr(line, ' ') + 1, "pause_us",
			    (json_int_t)((hl_now_ns() - t0) / 1000), "vms", vms, "sessions", sessions,
			    "fds", fl.n, "state_bytes", (int)strlen(text));
	kp.successor = pid;
	kp.handed_over = true;
	ctl_server_hand_over(kp.ctl);
	close(memfd);
	close(ready[0]);
	free(text);
	free(fl.fd);
	return 0;
}

/* --- the new keeper: the state in ------------------------------------------------------ */

#define REFUSE(...)                                                                         \
	do {                                                                                \
		snprintf(err, errlen, __VA_ARGS__);                                         \
		return -1;                                                                  \
	} while (0)

/* An fd the state names: open here (kept across exec), and close-on-exec again. */
static bool
fd_ok(int fd)
{
	return fd < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) == 0;
}

static int
restore_session(struct kp_state *st, json_t *j, char *err, size_t errlen)
{
	json_t *regions, *rings, *x;
	json_int_t features, pf, mtu, status, epoch;
	int features_set, pf_set, owner, mem_set, mtu_set, status_set, log_set;
	size_t i;

	if (json_unpack_ex(j, NULL, JSON_STRICT, "{s:b,s:b,s:b,s:b,s:b,s:b,s:b,s:I,s:I,s:I,s:I,s:o,s:o,s:I}",
			   "features_set", &features_set, "pf_set", &pf_set, "owner", &owner,
			   "mem_set", &mem_set, "mtu_set", &mtu_set, "status_set", &status_set,
			   "log_set", &log_set, "features", &features, "protocol_features", &pf,
			   "mtu", &mtu, "status", &status, "regions", &regions, "rings", &rings,
			   "epoch", &epoch) != 0 ||
	    !json_is_array(regions) || json_array_size(regions) > VU_MAX_REGIONS ||
	    !json_is_array(rings) || json_array_size(rings) > VU_MAX_VRINGS)
		REFUSE("a session's state is not as this keeper writes it");
	st->features_set = features_set;
	st->pf_set = pf_set;
	st->owner = owner;
	st->mem_set = mem_set;
	st->mtu_set = mtu_set;
	st->status_set = status_set;
	st->log_set = log_set;
	st->features = (uint64_t)features;
	st->protocol_features = (uint64_t)pf;
	st->mtu = (uint64_t)mtu;
	st->status = (uint64_t)status;
	st->epoch = (uint64_t)epoch;
	st->mem.nregions = (uint32_t)json_array_size(regions);
	json_array_foreach(regions, i, x) {
		struct vu_region *r = &st->mem.regions[i];
		json_int_t gpa, size, uaddr, off;
		int fd, mapped;

		if (json_unpack_ex(x, NULL, JSON_STRICT, "[I,I,I,I,i,b]", &gpa, &size, &uaddr, &off, &fd,
				   &mapped) != 0)
			REFUSE("a memory region is not as this keeper writes it");
		r->guest_phys_addr = (uint64_t)gpa;
		r->memory_size = (uint64_t)size;
		r->userspace_addr = (uint64_t)uaddr;
		r->mmap_offset = (uint64_t)off;
		if (fd < 0 || !fd_ok(fd))
			REFUSE("memory region %zu's fd %d is not open", i, fd);
		st->mem_fds[i] = fd;
		if (mapped) {
			size_t len = r->memory_size + r->mmap_offset;
			void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);

			if (p == MAP_FAILED)
				REFUSE("memory region %zu: mmap: %s", i, strerror(errno));
			st->maps[i] = p;
			st->map_len[i] = len;
		}
	}
	st->nvrings = (uint32_t)json_array_size(rings);
	json_array_foreach(rings, i, x) {
		struct kp_vring *r = &st->vr[i];
		int num_set, addr_set, kick_set, call_set, err_set, num, base, index, flags;
		int kick, call, efd, kick_nofd, call_nofd, enabled, started, stopped;
		json_int_t desc, used, avail, log;

		if (json_unpack_ex(x, NULL, JSON_STRICT,
				   "{s:b,s:b,s:b,s:b,s:b,s:i,s:i,s:[i,i,I,I,I,I],s:i,s:i,s:i,s:b,s:b,s:b,s:b,s:b}",
				   "num_set", &num_set, "addr_set", &addr_set, "kick_set", &kick_set,
				   "call_set", &call_set, "err_set", &err_set, "num", &num, "base", &base,
				   "addr", &index, &flags, &desc, &used, &avail, &log, "kick", &kick,
				   "call", &call, "err", &efd, "kick_nofd", &kick_nofd, "call_nofd",
				   &call_nofd, "enabled", &enabled, "started", &started, "stopped",
				   &stopped) != 0)
			REFUSE("vring %zu is not as this keeper writes it", i);
		if (!fd_ok(kick) || !fd_ok(call) || !fd_ok(efd))
			REFUSE("vring %zu's eventfds are not open", i);
		*r = (struct kp_vring){ .num_set = num_set, .addr_set = addr_set, .kick_set = kick_set,
					.call_set = call_set, .err_set = err_set, .num = (uint32_t)num,
					.base = (uint32_t)base,
					.addr = { (uint32_t)index, (uint32_t)flags, (uint64_t)desc,
						  (uint64_t)used, (uint64_t)avail, (uint64_t)log },
					.kick = kick, .call = call, .err = efd, .kick_nofd = kick_nofd,
					.call_nofd = call_nofd, .enabled = enabled, .started = started,
					.stopped = stopped };
	}
	return 0;
}

static int
restore_vm(json_t *j, char *err, size_t errlen)
{
	json_t *b, *blfd, *mac, *session, *x;
	const char *name, *sock, *anomaly;
	json_int_t next_connect, last_frontend, c[6];
	int slot, client, lfd, ffd, serving, home, want;
	struct kp_vm *vm;
	size_t i;

	if (json_unpack_ex(j, NULL, JSON_STRICT,
			   "{s:i,s:s,s:s,s:b,s:i,s:i,s:I,s:i,s:i,s:o,s:o,s:i,s:I,s:[I,I,I,I,I,I],s:o,s:s,s:o}",
			   "slot", &slot, "name", &name, "sock", &sock, "client", &client, "lfd", &lfd,
			   "ffd", &ffd, "next_connect_ns", &next_connect, "serving", &serving, "home", &home,
			   "b", &b, "blfd", &blfd, "want_preload", &want, "last_frontend_ns", &last_frontend,
			   "counters", &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], "mac", &mac,
			   "last_anomaly", &anomaly, "session", &session) != 0)
		REFUSE("a VM is not as this keeper writes it");
	if (slot < 0 || slot >= KP_MAX_VMS || kp.vms[slot].in_use || !hl_valid_name(name) ||
	    strlen(sock) >= sizeof(vm->sock) || serving < -1 || serving >= KP_MAX_GENS ||
	    home < -1 || home >= KP_MAX_GENS || !json_is_array(b) ||
	    json_array_size(b) != KP_MAX_GENS || !json_is_array(blfd) ||
	    json_array_size(blfd) != KP_MAX_GENS)
		REFUSE("VM slot %d is not as this keeper writes it", slot);
	vm = &kp.vms[slot];
	memset(vm, 0, sizeof(*vm));
	kp_state_init(&vm->st);
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	snprintf(vm->sock, sizeof(vm->sock), "%s", sock);
	snprintf(vm->last_anomaly, sizeof(vm->last_anomaly), "%s", anomaly);
	vm->client = client;
	vm->lfd = lfd;
	vm->ffd = ffd;
	vm->next_connect_ns = (uint64_t)next_connect;
	vm->serving = serving;
	vm->home = home;
	vm->want_preload = (uint32_t)want;
	vm->last_frontend_ns = (uint64_t)last_frontend;
	vm->connects = (uint64_t)c[0];
	vm->disconnects = (uint64_t)c[1];
	vm->handoffs = (uint64_t)c[2];
	vm->failovers = (uint64_t)c[3];
	vm->refused = (uint64_t)c[4];
	vm->announces = (uint64_t)c[5];
	if (!fd_ok(lfd) || !fd_ok(ffd))
		REFUSE("VM %s's sockets are not open", name);
	if (json_is_array(mac)) {
		int m[6];

		if (json_unpack(mac, "[i,i,i,i,i,i]", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 0)
			REFUSE("VM %s's MAC is not as this keeper writes it", name);
		for (int k = 0; k < 6; k++)
			vm->mac[k] = (uint8_t)m[k];
		vm->has_mac = true;
	}
	json_array_foreach(b, i, x) {
		struct kp_bconn *bc = &vm->b[i];
		json_int_t epoch, features, pf;
		int fd, preloaded;

		if (json_unpack_ex(x, NULL, JSON_STRICT, "{s:i,s:I,s:b,s:I,s:I}", "fd", &fd, "epoch",
				   &epoch, "preloaded", &preloaded, "features", &features,
				   "protocol_features", &pf) != 0 || !fd_ok(fd))
			REFUSE("VM %s's connection to generation slot %zu is not open", name, i);
		*bc = (struct kp_bconn){ .fd = fd, .epoch = (uint64_t)epoch, .preloaded = preloaded,
					 .features = (uint64_t)features, .protocol_features = (uint64_t)pf };
		vm->blfd[i] = (int)json_integer_value(json_array_get(blfd, i));
		if (!json_is_integer(json_array_get(blfd, i)) || !fd_ok(vm->blfd[i]))
			REFUSE("VM %s's socket for generation slot %zu is not open", name, i);
	}
	if (restore_session(&vm->st, session, err, errlen) != 0)
		return -1;
	vm->in_use = true;
	return 0;
}

int
kp_take_over(int state_fd, int *ctl_fd, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *st, *gens, *vms, *x;
	const char *release, *run_dir;
	int format = 0, from, watch, stall, standby, pause, cfd;
	size_t i;

	st = json_loadfd(state_fd, 0, &jerr);
	close(state_fd);
	if (st == NULL)
		REFUSE("the state is not JSON (%s)", jerr.text);
	json_unpack(st, "{s:i}", "format", &format);
	if (format != KP_STATE_FORMAT) {
		snprintf(err, errlen, "the running keeper wrote state format %d; this keeper (%s) "
			 "reads format %d", format, HITLESS_RELEASE, KP_STATE_FORMAT);
		json_decref(st);
		return -1;
	}
	if (json_unpack_ex(st, NULL, JSON_STRICT, "{s:i,s:s,s:i,s:s,s:i,s:i,s:i,s:i,s:i,s:o,s:o}",
			   "format", &format, "release", &release, "from_pid", &from, "run_dir", &run_dir,
			   "watch_us", &watch, "stall_us", &stall, "standby", &standby,
			   "debug_pause_ms", &pause, "ctl_fd", &cfd, "gens", &gens, "vms", &vms) != 0 ||
	    !json_is_array(gens) || !json_is_array(vms)) {
		snprintf(err, errlen, "the state is not as this keeper writes it");
		json_decref(st);
		return -1;
	}
	if (strcmp(run_dir, kp.run_dir) != 0 || standby < -1 || standby >= KP_MAX_GENS ||
	    cfd < 0 || !fd_ok(cfd)) {
		snprintf(err, errlen, "the state is for run dir %s and control socket fd %d; this "
			 "keeper was started for %s", run_dir, cfd, kp.run_dir);
		json_decref(st);
		return -1;
	}
	kp.watch_us = (uint32_t)watch;
	kp.stall_us = (uint32_t)stall;
	kp.standby = standby;
	kp.debug_pause_ms = (uint32_t)pause;
	*ctl_fd = cfd;
	json_array_foreach(gens, i, x) {
		const char *name, *dir;
		int slot, pid, listen, dead;
		json_t *pace;

		if (json_unpack_ex(x, NULL, JSON_STRICT, "{s:i,s:s,s:s,s:i,s:b,s:b,s:o}", "slot", &slot,
				   "name", &name, "run_dir", &dir, "pid", &pid, "listen", &listen,
				   "dead", &dead, "pace", &pace) != 0 ||
		    kp_gen_adopt(slot, name, dir, pid, listen, dead) != 0 ||
		    kp_pace_adopt(slot, pace) != 0) {
			snprintf(err, errlen, "generation %zu of the state is not as this keeper writes "
				 "it, or its pace port is not open", i);
			json_decref(st);
			return -1;
		}
	}
	json_array_foreach(vms, i, x) {
		if (restore_vm(x, err, errlen) != 0) {
			json_decref(st);
			return -1;
		}
	}
	/* the relay's epoll set: what the old keeper's held */
	for (int v = 0; v < KP_MAX_VMS; v++) {
		struct kp_vm *vm = &kp.vms[v];

		if (!vm->in_use)
			continue;
		if (vm->lfd >= 0)
			kp_ev_add(vm->lfd, KP_EV_LISTEN, v, 0);
		if (vm->ffd >= 0)
			kp_ev_add(vm->ffd, KP_EV_FRONTEND, v, 0);
		for (int gi = 0; gi < KP_MAX_GENS; gi++)
			if (vm->b[gi].fd >= 0)
				kp_ev_add(vm->b[gi].fd, KP_EV_BACKEND, v, gi);
	}
	kp_ev_timer(kp_timer_needed());
	fprintf(stderr, "hitless-keeper: took over from pid %d (%s): %zu generations, %zu VMs\n",
		from, release, json_array_size(gens), json_array_size(vms));
	json_decref(st);
	return 0;
}
