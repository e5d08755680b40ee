/* SPDX-License-Identifier: Apache-2.0
 * systemd's file-descriptor store (--fdstore): a keeper that crashes comes back with its
 * sessions, no frontend reconnecting (DESIGN.md §14).
 *
 * The state a keeper upgrade hands over (upgrade.c: JSON naming fds by number) is also kept
 * with systemd, as it changes: every file it names is stored (FDSTORE=1) under a name of its own
 * ("f<n>-<i>"), and the state as a sealed memfd ("state-<n>") whose first line says which
 * numbers each name goes back to. Files are told apart by kcmp(), not by number: systemd keeps
 * one copy of a file however many numbers the keeper has for it (a guest's memory often comes
 * as one memfd for several regions), and a number closed and opened again for another file
 * between two looks is another file. What the state no longer names is removed
 * (FDSTOREREMOVE=1), the previous state once the new one is in. So the store always holds a
 * state and every file it names, whenever the keeper dies.

 * systemd hands the store to the keeper it starts again (LISTEN_FDS, LISTEN_FDNAMES). That keeper
 * puts each fd back at the number the state names (dup2), then takes the state over as a
 * keeper upgrade's new keeper does, and goes on storing. What it cannot restore: a frontend
 * request the dead keeper had read and not yet answered (that frontend times out and, as
 * without the store, reconnects).
 *
 * The state is written after each batch of the relay's events and each control command
 * (kp.lock held), compared with the last one written, and also looked at every
 * FDSTORE_SYNC_NS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "keeper.h"

#define FDSTORE_SYNC_NS 100000000ull

struct stored {
	int num;   /* the fd number the state names */
	int dup;   /* our duplicate of what was stored, to tell a reused number apart */
	char name[24];
};

static int note(int num, const char *name);
static bool same_file(int a, int b);

static bool enabled;
static struct stored *tab;
static int ntab, captab;
static char *last_text;   /* the state last stored */
static char state_name[24]; /* its name in the store, "" for none */
static uint64_t seq;      /* names stored by this process: f<num>-<seq>, state-<seq> */
static uint64_t last_sync_ns;

bool
kp_fdstore_enabled(void)
{
	return enabled;
}

int
kp_fdstore_start(char *err, size_t errlen)
{
	if (getenv("NOTIFY_SOCKET") == NULL) {
		snprintf(err, errlen, "--fdstore: no systemd notify socket (run it as a Type=notify "
			 "unit with FileDescriptorStoreMax=)");
		return -1;
	}
	/* files are told apart with kcmp() (a seccomp filter may forbid it): without it, a file
	 * stored again under a new name would be dropped by systemd as one it holds, and then
	 * removed with its old name */
	{
		int e = eventfd(0, EFD_CLOEXEC), d = e >= 0 ? fcntl(e, F_DUPFD_CLOEXEC, 3) : -1;
		bool ok = d >= 0 && same_file(e, d);

		if (d >= 0)
			close(d);
		if (e >= 0)
			close(e);
		if (!ok) {
			snprintf(err, errlen, "--fdstore: kcmp() is not allowed here (%s): files could "
				 "not be told apart", strerror(errno));
			return -1;
		}
	}
	enabled = true;
	/* a keeper upgrade's new keeper: what the old one stored is its (upgrade.c) */
	if (getenv(KP_FDSTORE_ENV) != NULL) {
		const char *p = getenv(KP_FDSTORE_ENV);
		unsigned long long s;
		int num, len;
		char name[24];

		if (sscanf(p, "%llu %23s%n", &s, name, &len) != 2) {
			snprintf(err, errlen, "%s: not as a keeper writes it", KP_FDSTORE_ENV);
			return -1;
		}
		seq = s;
		snprintf(state_name, sizeof(state_name), "%s", strcmp(name, "-") == 0 ? "" : name);
		for (p += len; sscanf(p, " %d=%23s%n", &num, name, &len) == 2; p += len)
			if (num < 3 || note(num, name) != 0) {
				snprintf(err, errlen, "%s: fd %d is not open", KP_FDSTORE_ENV, num);
				return -1;
			}
		unsetenv(KP_FDSTORE_ENV);
		/* nothing stored until the old keeper has handed over (or killed this one) */
		last_sync_ns = hl_now_ns();
	}
	return 0;
}

char *
kp_fdstore_names(void)
{
	size_t cap = 64 + (size_t)ntab * 40, off;
	char *out = malloc(cap);

	if (out == NULL)
		return NULL;
	off = (size_t)snprintf(out, cap, "%llu %s", (unsigned long long)seq,
			       state_name[0] ? state_name : "-");
	for (int i = 0; i < ntab && off < cap; i++)
		off += (size_t)snprintf(out + off, cap - off, " %d=%s", tab[i].num, tab[i].name);
	return out;
}

static bool
same_file(int a, int b)
{
	return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b) == 0;
}

/* Store fd under name. 0 or -errno. */
static int
store(int fd, const char *name)
{
	char msg[64];
	int rc;

	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	rc = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
	return rc > 0 ? 0 : rc < 0 ? rc : -ENOTCONN;
}

static void
unstore(const char *name)
{
	char msg[64];

	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	sd_notify(0, msg);
}

static int
find(int num)
{
	for (int i = 0; i < ntab; i++)
		if (tab[i].num == num)
			return i;
	return -1;
}

static void
drop(int i)
{
	unstore(tab[i].name);
	close(tab[i].dup);
	tab[i] = tab[--ntab];
}

/* Note num as stored under name (its duplicate taken here). 0 or -errno. */
static int
note(int num, const char *name)
{
	int d;

	if (ntab == captab) {
		int cap = captab ? captab * 2 : 64;
		struct stored *t = realloc(tab, sizeof(*t) * (size_t)cap);

		if (t == NULL)
			return -ENOMEM;
		tab = t;
		captab = cap;
	}
	if ((d = fcntl(num, F_DUPFD_CLOEXEC, 3)) < 0)
		return -errno;
	tab[ntab].num = num;
	tab[ntab].dup = d;
	snprintf(tab[ntab].name, sizeof(tab[ntab].name), "%s", name);
	ntab++;
	return 0;
}

/* The state as a sealed memfd: the line head, then text. -errno on failure. */
static int
state_memfd(const char *head, const char *text)
{
	int fd = memfd_create("hitless-keeper-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -errno;
	if (dprintf(fd, "%s\n%s", head, text) < 0 || lseek(fd, 0, SEEK_SET) != 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
		close(fd);
		return -errno;
	}
	return fd;
}

/* Same file as one already noted in t[0..n): its index, or -1. */
static int
find_file(const struct stored *t, int n, int fd)
{
	for (int i = 0; i < n; i++)
		if (same_file(fd, t[i].dup))
			return i;
	return -1;
}

void
kp_fdstore_sync(bool force)
{
	struct kp_fdlist fl = { 0 };
	struct stored *nt = NULL;
	uint64_t now = hl_now_ns();
	char name[24], *text = NULL, *head = NULL;
	bool *kept = NULL;
	size_t hcap, hoff;
	int nn = 0, sfd;

	if (!enabled || kp.handed_over || kp.quit)
		return;
	if (!force && now - last_sync_ns < FDSTORE_SYNC_NS)
		return;
	last_sync_ns = now;
	text = kp_state_text(&fl);
	if (text == NULL || (last_text != NULL && strcmp(text, last_text) == 0))
		goto out;
	seq++;
	nt = calloc((size_t)fl.n + 1, sizeof(*nt));
	kept = calloc((size_t)ntab + 1, sizeof(*kept));
	hcap = 32 + (size_t)fl.n * 40;
	head = malloc(hcap);
	if (nt == NULL || kept == NULL || head == NULL)
		goto out;
	/* each fd: stored already (its file under a name), or stored now */
	for (int i = 0; i < fl.n; i++) {
		int fd = fl.fd[i], o = find(fd), k;
		struct stored *e = &nt[nn];

		if (o >= 0 && !kept[o] && same_file(fd, tab[o].dup)) {
			*e = tab[o]; /* its duplicate carried over */
			kept[o] = true;
		} else {
			e->num = fd;
			if ((e->dup = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
				goto fail;
			if ((k = find_file(tab, ntab, fd)) >= 0) {
				snprintf(e->name, sizeof(e->name), "%s", tab[k].name);
			} else if ((k = find_file(nt, nn, fd)) >= 0) {
				snprintf(e->name, sizeof(e->name), "%s", nt[k].name);
			} else {
				snprintf(e->name, sizeof(e->name), "f%llu-%d", (unsigned long long)seq, i);
				if (store(fd, e->name) != 0) {
					close(e->dup);
					fprintf(stderr, "hitless-keeper: fd %d could not be stored with "
						"systemd\n", fd);
					goto fail;
				}
			}
		}
		nn++;
	}
	/* the state: which numbers each name goes back to, then the JSON */
	hoff = (size_t)snprintf(head, hcap, "hitless-fdstore");
	for (int i = 0; i < nn && hoff < hcap; i++)
		hoff += (size_t)snprintf(head + hoff, hcap - hoff, " %s=%d", nt[i].name, nt[i].num);
	if (hoff >= hcap)
		goto fail;
	snprintf(name, sizeof(name), "state-%llu", (unsigned long long)seq);
	if ((sfd = state_memfd(head, text)) < 0)
		goto fail;
	if (store(sfd, name) != 0) {
		close(sfd);
		goto fail;
	}
	close(sfd); /* systemd holds it */
	if (state_name[0])
		unstore(state_name);
	snprintf(state_name, sizeof(state_name), "%s", name);
	/* what the state no longer names: out of the store (each name once) */
	for (int i = 0; i < ntab; i++) {
		bool used = false;

		for (int j = 0; j < nn && !used; j++)
			used = strcmp(nt[j].name, tab[i].name) == 0;
		for (int j = 0; j < i && !used; j++)
			used = strcmp(tab[j].name, tab[i].name) == 0; /* already removed */
		if (!used)
			unstore(tab[i].name);
		if (!kept[i])
			close(tab[i].dup);
	}
	free(tab);
	tab = nt;
	ntab = captab = nn;
	nt = NULL;
	free(last_text);
	last_text = text;
	text = NULL;
	goto out;
fail:
	/* the store as it was: what was stored this round taken out again */
	for (int i = 0; i < nn; i++) {
		bool old_name = false, old_dup = false;

		for (int j = 0; j < ntab; j++) {
			old_name |= strcmp(tab[j].name, nt[i].name) == 0;
			old_dup |= tab[j].dup == nt[i].dup;
		}
		if (!old_name)
			unstore(nt[i].name);
		if (!old_dup)
			close(nt[i].dup);
	}
out:
	free(nt);
	free(kept);
	free(head);
	free(text);
	free(fl.fd);
}

/* The state's first line (read from its start; the JSON follows it at the file's offset). */
static char *
read_head(int fd)
{
	size_t cap = 4096, len = 0;
	char *b = malloc(cap), c;

	if (b == NULL || lseek(fd, 0, SEEK_SET) != 0) {
		free(b);
		return NULL;
	}
	while (read(fd, &c, 1) == 1 && c != '\n') {
		if (len + 1 == cap) {
			char *nb = realloc(b, cap *= 2);

			if (nb == NULL) {
				free(b);
				return NULL;
			}
			b = nb;
		}
		b[len++] = c;
	}
	b[len] = '\0';
	return b;
}

/* A number every fd systemd passed can move to without meeting one the state names. */
static int
high_fd_base(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < 2048)
		return 1024;
	return (int)(rl.rlim_cur / 2);
}

int
kp_fdstore_restore(int *state_fd, char *err, size_t errlen)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names), base = high_fd_base(), *moved;
	int state = -1, rc = 0;
	uint64_t best = 0;

	*state_fd = -1;
	if (n <= 0) {
		free(names);
		return 0; /* nothing stored: a keeper that starts empty */
	}
	moved = calloc((size_t)n, sizeof(*moved));
	/* out of the way first: the numbers systemd gave may be ones the state names */
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;

		moved[i] = moved ? fcntl(fd, F_DUPFD_CLOEXEC, base) : -1;
		close(fd);
		if (moved[i] < 0 && rc == 0) {
			snprintf(err, errlen, "the stored fds could not be moved: %s", strerror(errno));
			rc = -1;
		}
		if (moved[i] >= 0 && strncmp(names[i], "state-", 6) == 0) {
			uint64_t s = strtoull(names[i] + 6, NULL, 10);

			if (state < 0 || s > best) {
				state = i;
				best = s;
			}
		}
	}
	if (rc == 0 && state < 0) {
		snprintf(err, errlen, "systemd passed %d fds and no state", n);
		rc = -1;
	}
	/* then each at the numbers the state's first line gives it */
	if (rc == 0) {
		char *head = read_head(moved[state]), *save = NULL;

		if (head == NULL || strncmp(head, "hitless-fdstore", 15) != 0) {
			snprintf(err, errlen, "the stored state has no fd line");
			rc = -1;
		}
		/* every fd at its number first, then our duplicates (which take free numbers: taken
		 * earlier, one could sit at a number the state names) */
		int (*placed)[2] = calloc((size_t)n + 1, sizeof(*placed)), np = 0;

		for (char *t = head ? strtok_r(head + 15, " ", &save) : NULL; rc == 0 && t != NULL;
		     t = strtok_r(NULL, " ", &save)) {
			char *eq = strrchr(t, '=');
			int num = eq ? atoi(eq + 1) : -1, at = -1;
			bool twice = false;

			if (eq != NULL)
				*eq = '\0';
			for (int i = 0; i < n && at < 0; i++)
				if (strcmp(names[i], t) == 0 && moved[i] >= 0)
					at = i;
			for (int j = 0; j < np; j++)
				twice |= placed[j][0] == num;
			if (placed == NULL || at < 0 || num < 3 || num >= base || twice) {
				snprintf(err, errlen, "the state names fd %d as '%.24s', which the store "
					 "does not hold where it can be put back", num, t);
				rc = -1;
			} else if (dup2(moved[at], num) != num) {
				snprintf(err, errlen, "stored fd %d could not be put back: %s", num,
					 strerror(errno));
				rc = -1;
			} else {
				placed[np][0] = num;
				placed[np++][1] = at;
			}
		}
		for (int j = 0; rc == 0 && j < np; j++)
			if (note(placed[j][0], names[placed[j][1]]) != 0) {
				snprintf(err, errlen, "fd %d: %s", placed[j][0], strerror(errno));
				rc = -1;
			}
		free(placed);
		free(head);
	}
	if (rc == 0)
		snprintf(state_name, sizeof(state_name), "%s", names[state]);
	for (int i = 0; i < n; i++) {
		if (rc != 0)
			unstore(names[i]); /* not to be met again: the next start is an empty one */
		if (moved && moved[i] >= 0 && (rc != 0 || i != state))
			close(moved[i]);
		free(names[i]);
	}
	if (rc != 0) {
		for (int i = ntab - 1; i >= 0; i--) {
			close(tab[i].num);
			close(tab[i].dup);
		}
		ntab = 0;
		free(names);
		free(moved);
		return -1;
	}
	if (best > seq)
		seq = best;
	/* (its offset is past the first line: the JSON is read from there) */
	*state_fd = moved[state];
	free(names);
	free(moved);
	return 1;
}

void
kp_fdstore_forget(void)
{
	for (int i = ntab - 1; i >= 0; i--)
		drop(i);
	if (state_name[0])
		unstore(state_name);
	state_name[0] = '\0';
	free(last_text);
	last_text = NULL;
}
