/* SPDX-License-Identifier: Apache-2.0
 * Generations as the keeper knows them: name, run dir (vhost sockets at <run-dir>/vhost/<vm>.sock),
 * pid, and the heartbeat page the generation's packet loop bumps.
 *
 * Death detection faster than the socket close: the kernel closes a dead process's sockets only
 * after tearing down its memory (11-18 ms for a 512 MB process, >100 ms under load, DESIGN.md §2).
 * Instead, when the heartbeat stops moving, look at every thread of the process: once *all*
 * have PF_EXITING set, none can run user code again, so no thread of it can touch a ring and the
 * sessions can move at once. A thread that is merely descheduled never has that flag, so a
 * stalled heartbeat alone never triggers a failover. A dead generation's sessions fail over
 * to the standby (handoff.c).
 *
 * When to look: a thread of the keeper waits on the lock the generation's packet loop holds
 * for its life (heartbeat.h alive). The kernel wakes it as that thread exits, before the
 * process's memory goes and its sockets close; the keeper then looks at every thread as
 * above, again every KP_DEATH_RECHECK_US until all are exiting. Nothing polls while the
 * generation lives. A generation without that lock (built before it) is watched by its
 * heartbeat instead: the timer reads it every watch_us and looks once it stalled for stall_us.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "heartbeat.h"
#include "keeper.h"

#define PF_EXITING 0x00000004u

/* The futex word of a glibc mutex: the robust-futex protocol the kernel follows at a thread's
 * exit (owner's tid, FUTEX_WAITERS, FUTEX_OWNER_DIED) is on this word. */
_Static_assert(offsetof(pthread_mutex_t, __data.__lock) == 0, "glibc mutex: lock word first");

/* The wait on one generation's alive lock. Shared by the keeper and the waiting thread, whose
 * last user frees it: the keeper lets go of it when it forgets the generation, and the thread
 * sleeps on until the generation exits (it never polls), then ends. */
struct kp_deathwatch {
	volatile struct hl_heartbeat *page; /* its own mapping */
	uint32_t refs;                      /* atomic: 2 while both hold it */
	uint32_t forgotten;                 /* atomic: the keeper let go */
	uint32_t gone;                      /* atomic: the loop's thread exited */
	uint32_t failed;                    /* atomic: the wait failed: watched by the heartbeat */
};

struct kp_heartbeat {
	volatile struct hl_heartbeat *page; /* the keeper writes peer_fenced only */
	uint64_t last_beat;
	uint64_t last_change_ns;
	struct kp_deathwatch *dw;           /* NULL: watched by its heartbeat (timer) */
};

static void
deathwatch_put(struct kp_deathwatch *dw)
{
	if (__atomic_sub_fetch(&dw->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	munmap((void *)dw->page, sizeof(struct hl_heartbeat));
	free(dw);
}

/* Sleep on the alive lock's word until its owner is gone: the kernel sets FUTEX_OWNER_DIED and
 * wakes the waiters (FUTEX_WAITERS set here first) as the owning thread exits; a word with no
 * owner at all is a loop that let go of it. Then the relay is woken to look at the process. */
static void *
deathwatch_run(void *arg)
{
	struct kp_deathwatch *dw = arg;
	uint32_t *word = (uint32_t *)&dw->page->alive;

	for (;;) {
		uint32_t v = __atomic_load_n(word, __ATOMIC_ACQUIRE);

		if ((v & FUTEX_TID_MASK) == 0 || (v & FUTEX_OWNER_DIED))
			break;
		if (!(v & FUTEX_WAITERS) &&
		    !__atomic_compare_exchange_n(word, &v, v | FUTEX_WAITERS, false, __ATOMIC_ACQ_REL,
						 __ATOMIC_ACQUIRE))
			continue;
		/* shared, not private: the word is in the generation's page */
		if (syscall(SYS_futex, word, FUTEX_WAIT, v | FUTEX_WAITERS, NULL, NULL, 0) != 0 &&
		    errno != EAGAIN && errno != EINTR) {
			/* never expected; not a spin: the heartbeat watches this generation now */
			__atomic_store_n(&dw->failed, 1, __ATOMIC_RELEASE);
			if (!__atomic_load_n(&dw->forgotten, __ATOMIC_ACQUIRE))
				kp_ev_wake();
			deathwatch_put(dw);
			return NULL;
		}
	}
	/* the kernel wakes one waiter: the others (a watch the keeper let go of, a keeper being
	 * replaced) are woken from here, or one of them could take the only wake-up */
	syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	__atomic_store_n(&dw->gone, 1, __ATOMIC_RELEASE);
	if (!__atomic_load_n(&dw->forgotten, __ATOMIC_ACQUIRE))
		kp_ev_wake();
	deathwatch_put(dw);
	return NULL;
}

/* Start waiting on the generation's alive lock (its page mapped again from fd): NULL when the
 * page has none, or no thread could be started (the heartbeat timer watches it then). */
static struct kp_deathwatch *
deathwatch_start(int fd, volatile struct hl_heartbeat *page)
{
	struct kp_deathwatch *dw;
	pthread_attr_t attr;
	pthread_t t;
	void *p;

	if (!(__atomic_load_n(&page->features, __ATOMIC_ACQUIRE) & HL_HB_ALIVE))
		return NULL;
	p = mmap(NULL, sizeof(struct hl_heartbeat), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return NULL;
	dw = calloc(1, sizeof(*dw));
	if (dw == NULL) {
		munmap(p, sizeof(struct hl_heartbeat));
		return NULL;
	}
	dw->page = p;
	dw->refs = 2;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	if (pthread_create(&t, &attr, deathwatch_run, dw) != 0) {
		pthread_attr_destroy(&attr);
		munmap(p, sizeof(struct hl_heartbeat));
		free(dw);
		return NULL;
	}
	pthread_attr_destroy(&attr);
	pthread_setname_np(t, "hl-deathwatch");
	return dw;
}

/* The keeper forgets the generation: the waiting thread ends when the generation exits. */
static void
deathwatch_forget(struct kp_deathwatch *dw)
{
	if (dw == NULL)
		return;
	__atomic_store_n(&dw->forgotten, 1, __ATOMIC_RELEASE);
	deathwatch_put(dw);
}

/* The generation's pid from <run_dir>/dp.pid, written by hitless-dp once it is running. */
static int
read_pid(const char *run_dir, pid_t *pid)
{
	char path[128];
	FILE *f;
	int v = 0;

	snprintf(path, sizeof(path), "%s/dp.pid", run_dir);
	f = fopen(path, "r");
	if (f == NULL)
		return -errno;
	if (fscanf(f, "%d", &v) != 1 || v <= 1)
		v = 0;
	fclose(f);
	if (v == 0)
		return -EINVAL;
	*pid = v;
	return 0;
}

/* Map the generation's heartbeat page (the keeper reads the beat and may fence the peer link);
 * NULL when it is missing or belongs to another process (then the generation is watched
 * through its sockets only). */
static struct kp_heartbeat *
open_heartbeat(const char *run_dir, pid_t pid)
{
	char path[128];
	struct kp_heartbeat *hb;
	void *p;
	int fd;

	snprintf(path, sizeof(path), "%s/" HL_HB_FILE, run_dir);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	p = mmap(NULL, sizeof(struct hl_heartbeat), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		close(fd);
		return NULL;
	}
	if (((struct hl_heartbeat *)p)->magic != HL_HB_MAGIC || ((struct hl_heartbeat *)p)->pid != (uint32_t)pid) {
		munmap(p, sizeof(struct hl_heartbeat));
		close(fd);
		return NULL;
	}
	hb = calloc(1, sizeof(*hb));
	if (hb == NULL) {
		munmap(p, sizeof(struct hl_heartbeat));
		close(fd);
		return NULL;
	}
	hb->page = p;
	hb->last_beat = hb->page->beat;
	hb->last_change_ns = hl_now_ns();
	hb->dw = deathwatch_start(fd, hb->page);
	close(fd);
	return hb;
}

static void
close_heartbeat(struct kp_heartbeat *hb)
{
	if (hb == NULL)
		return;
	deathwatch_forget(hb->dw);
	munmap((void *)hb->page, sizeof(struct hl_heartbeat));
	free(hb);
}

int
kp_gen_find(const char *name)
{
	for (int i = 0; i < KP_MAX_GENS; i++)
		if (kp.gens[i].in_use && strcmp(kp.gens[i].name, name) == 0)
			return i;
	return -1;
}

/* A listen-mode attach that failed half-way: every socket it opened closed, the slot free. */
static void
attach_undo(int gi)
{
	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use)
			kp_blisten_close(&kp.vms[v], gi);
	kp_pace_close(gi);
	close_heartbeat(kp.gens[gi].hb);
	memset(&kp.gens[gi], 0, sizeof(kp.gens[gi]));
}

/* Attach a running generation: its run dir must hold the pid of a live process; its
 * heartbeat is watched from now on. */
int
kp_gen_attach(const char *name, const char *run_dir, bool listen, struct ctl_error *err)
{
	struct kp_gen *g = NULL;
	pid_t pid = 0;
	int rc;

	if (!hl_valid_name(name))
		return ctl_fail(err, "invalid-args", "gen: '%.40s' is not a valid name", name);
	if (strlen(run_dir) >= sizeof(g->run_dir) || run_dir[0] != '/')
		return ctl_fail(err, "invalid-args", "run_dir: must be an absolute path under %zu bytes",
				sizeof(g->run_dir));
	if (kp_gen_find(name) >= 0)
		return ctl_fail(err, "exists", "generation '%s' is already attached", name);
	if ((rc = read_pid(run_dir, &pid)) != 0)
		return ctl_fail(err, "no-generation", "no running generation in %s (dp.pid: %s)",
				run_dir, strerror(-rc));
	if (kill(pid, 0) != 0)
		return ctl_fail(err, "no-generation", "generation pid %d in %s is not running",
				(int)pid, run_dir);
	for (int i = 0; i < KP_MAX_GENS && g == NULL; i++)
		if (!kp.gens[i].in_use)
			g = &kp.gens[i];
	if (g == NULL)
		return ctl_fail(err, "full", "at most %d generations", KP_MAX_GENS);
	memset(g, 0, sizeof(*g));
	snprintf(g->name, sizeof(g->name), "%s", name);
	snprintf(g->run_dir, sizeof(g->run_dir), "%s", run_dir);
	g->pid = pid;
	g->hb = open_heartbeat(run_dir, pid);
	g->listen = listen;
	g->in_use = true;
	if (listen) {
		char dir[sizeof(g->run_dir) + 8];
		int gi = (int)(g - kp.gens);

		snprintf(dir, sizeof(dir), "%s/vhost", run_dir);
		mkdir(dir, 0750);
		for (int v = 0; v < KP_MAX_VMS; v++) {
			if (!kp.vms[v].in_use || (rc = kp_blisten_open(&kp.vms[v], gi)) == 0)
				continue;
			attach_undo(gi);
			return ctl_fail(err, "socket", "cannot listen for vm '%s' in %s/vhost: %s",
					kp.vms[v].name, run_dir, strerror(-rc));
		}
		if ((rc = kp_pace_open(gi, run_dir)) != 0) {
			attach_undo(gi);
			return ctl_fail(err, "socket", "cannot listen for the pace port at %s/vhost/%s: %s",
					run_dir, KP_PACE_SOCK, strerror(-rc));
		}
	}
	return 0;
}

int
kp_gen_adopt(int gi, const char *name, const char *run_dir, pid_t pid, bool listen, bool dead)
{
	struct kp_gen *g = &kp.gens[gi < 0 || gi >= KP_MAX_GENS ? 0 : gi];

	if (gi < 0 || gi >= KP_MAX_GENS || g->in_use || !hl_valid_name(name) ||
	    strlen(run_dir) >= sizeof(g->run_dir) || run_dir[0] != '/' || pid <= 1)
		return -1;
	memset(g, 0, sizeof(*g));
	snprintf(g->name, sizeof(g->name), "%s", name);
	snprintf(g->run_dir, sizeof(g->run_dir), "%s", run_dir);
	g->pid = pid;
	g->listen = listen;
	g->dead = dead;
	/* the page the generation bumps, mapped again (a dead one's is not watched any more) */
	g->hb = dead ? NULL : open_heartbeat(run_dir, pid);
	g->in_use = true;
	return 0;
}

/* Forget a generation that serves no VM (and is no VM's home without a frontend): its
 * connections (stopped sessions left after handoffs) are closed. */
int
kp_gen_detach(const char *name, struct ctl_error *err)
{
	int gi = kp_gen_find(name);

	if (gi < 0)
		return ctl_fail(err, "unknown-gen", "no generation '%.40s'", name);
	for (int v = 0; v < KP_MAX_VMS; v++) {
		struct kp_vm *vm = &kp.vms[v];
		if (vm->in_use && (vm->serving == gi || (vm->ffd < 0 && vm->home == gi)))
			return ctl_fail(err, "busy", "generation '%s' still serves vm '%s'", name,
					vm->name);
	}
	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use) {
			kp_bconn_close(&kp.vms[v], gi);
			kp_blisten_close(&kp.vms[v], gi);
		}
	if (kp.standby == gi)
		kp.standby = -1;
	kp_pace_close(gi);
	close_heartbeat(kp.gens[gi].hb);
	memset(&kp.gens[gi], 0, sizeof(kp.gens[gi]));
	return 0;
}

/* Flags word of /proc/PID/task/TID/stat (field 9, after the parenthesised comm). */
static int
task_flags(pid_t pid, const char *tid, unsigned long *flags, char *state)
{
	char path[320], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)pid, tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %lu", state, flags) != 2)
		return -EPROTO;
	return 0;
}

/* True when every thread of the generation is exiting (PF_EXITING, or zombie) or the process
 * is gone: none of it can run user code, so none can touch a ring again. */
static bool
gen_exiting(const struct kp_gen *g)
{
	char path[64];
	struct dirent *d;
	DIR *dir;
	int tasks = 0;
	bool all = true;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)g->pid);
	dir = opendir(path);
	if (dir == NULL)
		return true; /* gone entirely */
	while (all && (d = readdir(dir)) != NULL) {
		unsigned long flags;
		char state;

		if (d->d_name[0] == '.')
			continue;
		if (task_flags(g->pid, d->d_name, &flags, &state) != 0)
			continue; /* the thread is already gone */
		tasks++;
		if (!(flags & PF_EXITING) && state != 'Z' && state != 'X')
			all = false;
	}
	closedir(dir);
	return all;
}

/* True when the heartbeat has not moved for stall_us; records the beat when it moved. */
static bool
heartbeat_stalled(struct kp_gen *g, uint64_t now)
{
	uint64_t beat;

	if (g->hb == NULL)
		return false;
	beat = g->hb->page->beat;
	if (beat != g->hb->last_beat) {
		g->hb->last_beat = beat;
		g->hb->last_change_ns = now;
		return false;
	}
	return now - g->hb->last_change_ns >= (uint64_t)kp.stall_us * 1000;
}

/* Generation gi is dead: every other generation stops sending into its peer link at once,
 * before the first session moves, and holds those frames for the VMs on their way to it
 * (common/heartbeat.h). Returns how many were fenced. */
int
kp_fence_peers_of(int gi)
{
	int n = 0;

	for (int gj = 0; gj < KP_MAX_GENS; gj++) {
		struct kp_gen *o = &kp.gens[gj];

		if (gj == gi || !o->in_use || o->dead || o->hb == NULL)
			continue;
		__atomic_store_n(&o->hb->page->peer_fenced, 1, __ATOMIC_RELEASE);
		n++;
	}
	return n;
}

static void gen_died(int gi, const char *cause);

/* Frames lost in the peer link of dead generation gi (heartbeat.h): what it had handed into the
 * link that the survivor at the other end never took out, and the other way round. Read once
 * the survivor acknowledged the fence (it took what was left in the link once, and sends
 * nothing more into it), 500 ms at most. Signed: it may correct the count
 * inside the process (see the caller). -1: no survivor shares its link (or either has no page). */
static long long
lost_in_link(int gi)
{
	volatile struct hl_heartbeat *d = kp.gens[gi].hb ? kp.gens[gi].hb->page : NULL;
	long long lost = -1;

	if (d == NULL || d->peer_link == 0)
		return -1;
	for (int gj = 0; gj < KP_MAX_GENS; gj++) {
		struct kp_gen *s = &kp.gens[gj];
		volatile struct hl_heartbeat *p;
		uint64_t until = hl_now_ns() + 500000000ull;
		long long ab, ba;

		if (gj == gi || !s->in_use || s->dead || s->hb == NULL)
			continue;
		p = s->hb->page;
		if (p->peer_link != d->peer_link)
			continue;
		/* its counts are final once it says so (heartbeat.h): a loaded host may take a while */
		while (!__atomic_load_n(&p->peer_fence_ack, __ATOMIC_ACQUIRE) && hl_now_ns() < until)
			hl_sleep_ns(50000);
		if (!__atomic_load_n(&p->peer_fence_ack, __ATOMIC_ACQUIRE))
			continue; /* not known: not counted (lost_in_link null) */
		ab = (long long)__atomic_load_n(&d->peer_tx, __ATOMIC_ACQUIRE) - (long long)__atomic_load_n(&p->peer_rx, __ATOMIC_ACQUIRE);
		ba = (long long)__atomic_load_n(&p->peer_tx, __ATOMIC_ACQUIRE) - (long long)__atomic_load_n(&d->peer_rx, __ATOMIC_ACQUIRE);
		/* signed: a frame the dead one counted as taken in but whose link count it had not
		 * bumped yet (or the other way) is in one count only; the sum is the loss */
		lost = (lost < 0 ? 0 : lost) + ab + ba;
	}
	return lost;
}

/* A generation's connection closed under a session: when the process is gone or exiting, that
 * is its death, handled at once for all its sessions (gen_died: peers fenced, every session
 * failed over, the frames inside it counted, gen/dead). A crash is often seen through its
 * sockets before its heartbeat is judged (and one without a heartbeat page, stock OVS-DPDK,
 * is never judged by one); failing the sessions over one by one here instead left no
 * generation serving them for the watch to find dead: no gen/dead, and the frames lost inside
 * it uncounted (a keeper test failed 1 run in 2 under make test's load on that race). */
void
kp_gen_connection_lost(int gi)
{
	struct kp_gen *g = &kp.gens[gi];

	if (!g->in_use || g->dead || !gen_exiting(g))
		return;
	gen_died(gi, g->hb == NULL ? "its connections closed and every thread is exiting"
				   : "its connection closed and every thread is exiting");
}

/* Generation gi is dead (its every thread is exiting): its peers are fenced, the sessions it
 * served fail over to the standby, the connections other VMs had to it go, and gen/dead says
 * how many moved. */
static void
gen_died(int gi, const char *cause)
{
	struct kp_gen *g = &kp.gens[gi];
	uint64_t t0 = hl_now_ns();
	int moved = 0, failed = 0, fenced;
	json_t *inside = json_null();

	if (g->dead)
		return;
	g->dead = true;
	/* the frames it had taken and not let out (common/heartbeat.h): its page outlives it */
	if (g->hb != NULL)
		inside = json_integer((json_int_t)(__atomic_load_n(&g->hb->page->frames_in, __ATOMIC_ACQUIRE) -
						   __atomic_load_n(&g->hb->page->frames_out, __ATOMIC_ACQUIRE)));
	fenced = kp_fence_peers_of(gi);
	if (kp.standby == gi)
		kp.standby = -1;
	for (int v = 0; v < KP_MAX_VMS; v++) {
		struct kp_vm *vm = &kp.vms[v];
		if (!vm->in_use)
			continue;
		if (vm->serving == gi) {
			if (kp_failover(vm, cause) == 0)
				moved++;
			else
				failed++;
		} else {
			kp_bconn_close(vm, gi);
		}
	}
	{
		/* the death's loss: inside the process, and in its peer link (after the moves: the
		 * survivor takes what the link still holds meanwhile) */
		uint64_t done = hl_now_ns();
		long long link = lost_in_link(gi);

		if (link >= 0 && json_is_integer(inside)) {
			json_int_t total = json_integer_value(inside) + link;
			json_integer_set(inside, total > 0 ? total : 0);
		}
		ctl_emit(kp.ctl, "gen/dead",
			 json_pack("{s:s,s:s,s:i,s:i,s:i,s:o,s:o,s:I,s:I}", "gen", g->name, "cause", cause,
				   "moved", moved, "failed", failed, "fenced", fenced, "lost_inside", inside,
				   "lost_in_link", link >= 0 ? json_integer(link) : json_null(),
				   "t_ns", (json_int_t)t0, "done_ns", (json_int_t)done));
	}
}

static bool
serves_vms(int gi)
{
	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use && kp.vms[v].serving == gi)
			return true;
	return false;
}

/* Whether a thread waits on the generation's alive lock (else its heartbeat is polled). */
static bool
lock_watched(const struct kp_gen *g)
{
	return g->hb != NULL && g->hb->dw != NULL && !__atomic_load_n(&g->hb->dw->failed, __ATOMIC_ACQUIRE);
}

/* Whether the generation's packet loop thread has exited (its alive lock's owner died). */
static bool
loop_gone(const struct kp_gen *g)
{
	return lock_watched(g) && __atomic_load_n(&g->hb->dw->gone, __ATOMIC_ACQUIRE);
}

/* After a wake (the relay's, a death watch's) and every timer period: a generation whose
 * packet loop's thread exited, or whose heartbeat stopped (one without an alive lock), and
 * whose every thread is exiting is dead now, whatever its sockets say. Only a generation that
 * serves VMs is watched this way: a standby's death costs no session, and its sockets closing
 * tell soon enough. */
void
kp_gen_watch(uint64_t now)
{
	for (int gi = 0; gi < KP_MAX_GENS; gi++) {
		struct kp_gen *g = &kp.gens[gi];

		if (!g->in_use || g->dead || !serves_vms(gi))
			continue;
		if (loop_gone(g)) {
			if (gen_exiting(g))
				gen_died(gi, "its packet loop exited and every thread is exiting");
		} else if (g->hb != NULL && !lock_watched(g) && heartbeat_stalled(g, now) && gen_exiting(g)) {
			gen_died(gi, "heartbeat stopped and every thread is exiting");
		}
	}
}

/* Tell each generation how many others serve VMs from its packet loop's CPU (heartbeat.h
 * co_serving): while some do, they take turns on it in short slices. Called after every
 * control command and every batch of relay events, so a handoff or a failover is reflected
 * at once. */
void
kp_gen_share_update(void)
{
	for (int gi = 0; gi < KP_MAX_GENS; gi++) {
		struct kp_gen *g = &kp.gens[gi];
		uint32_t cpu, n = 0;

		if (!g->in_use || g->dead || g->hb == NULL)
			continue;
		cpu = __atomic_load_n(&g->hb->page->loop_cpu, __ATOMIC_ACQUIRE);
		for (int gj = 0; cpu != 0 && gj < KP_MAX_GENS; gj++) {
			struct kp_gen *o = &kp.gens[gj];

			n += gj != gi && o->in_use && !o->dead && o->hb != NULL && serves_vms(gj) &&
			     __atomic_load_n(&o->hb->page->loop_cpu, __ATOMIC_ACQUIRE) == cpu;
		}
		if (__atomic_load_n(&g->hb->page->co_serving, __ATOMIC_RELAXED) != n)
			__atomic_store_n(&g->hb->page->co_serving, n, __ATOMIC_RELEASE);
	}
}

uint32_t
kp_timer_needed(void)
{
	/* a loop gone, its other threads not all exiting yet: looked at again soon */
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		if (kp.gens[gi].in_use && !kp.gens[gi].dead && loop_gone(&kp.gens[gi]) && serves_vms(gi))
			return KP_DEATH_RECHECK_US;
	for (int gi = 0; gi < KP_MAX_GENS; gi++)
		if (kp.gens[gi].in_use && !kp.gens[gi].dead && kp.gens[gi].hb != NULL &&
		    !lock_watched(&kp.gens[gi]) && serves_vms(gi))
			return kp.watch_us;
	for (int v = 0; v < KP_MAX_VMS; v++)
		if (kp.vms[v].in_use && kp.vms[v].client && kp.vms[v].ffd < 0)
			return KP_RECONNECT_US;
	return 0;
}

json_t *
kp_gen_json(int gi)
{
	const struct kp_gen *g = &kp.gens[gi];
	int vms = 0;

	for (int v = 0; v < KP_MAX_VMS; v++)
		vms += kp.vms[v].in_use && kp.vms[v].serving == gi;
	/* a standby that took sessions over serves them: it is no standby any more (the host is
	 * exposed until another is designated) */
	/* how its death is seen (the file's header) */
	const char *watch = lock_watched(g) ? "loop-exit" : g->hb != NULL ? "heartbeat" : "sockets";

	uint32_t cpu = g->hb != NULL ? __atomic_load_n(&g->hb->page->loop_cpu, __ATOMIC_ACQUIRE) : 0;

	return json_pack("{s:s,s:s,s:i,s:b,s:b,s:s,s:o,s:i,s:b,s:i,s:o}", "gen", g->name, "run_dir", g->run_dir,
			 "pid", (int)g->pid, "dead", g->dead, "heartbeat", g->hb != NULL, "death_watch", watch,
			 /* its packet loop's CPU, and how many others serve VMs from it (they take turns) */
			 "loop_cpu", cpu != 0 ? json_integer(cpu - 1) : json_null(),
			 "co_serving", g->hb != NULL ? (int)__atomic_load_n(&g->hb->page->co_serving, __ATOMIC_RELAXED) : 0,
			 "standby", kp.standby == gi && vms == 0 && !g->dead, "serving", vms,
			 "pace", kp_pace_json(gi));
}
