/* SPDX-License-Identifier: Apache-2.0
 * The control socket server: a thread with an epoll loop over a listening Unix socket and its
 * clients. It splits input into lines, hands each to ctl_handle_line() and writes the reply.
 * A line longer than max_line is answered with "line-too-long" and skipped up to its newline.
 * Events (ctl_emit) go to clients that asked for them with events/subscribe; a client that does
 * not read its events is disconnected rather than allowed to block the process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"

#define CTL_MAX_CLIENTS 32

struct ctl_client {
	int fd;
	bool subscribed;
	bool skipping;  /* discarding the rest of an oversized line */
	size_t len;
	char *buf;      /* max_line bytes */
};

struct ctl_server {
	char path[108];
	int lfd, efd, wakefd;
	size_t max_line;
	struct ctl_registry *reg;
	pthread_t thread;
	void (*thread_init)(void *);
	void *thread_init_arg;
	bool running;
	/* ctl_server_hand_over: another process serves the socket now; this one answers the
	 * request in hand, then closes its clients and stops */
	volatile bool handed_over;
	pthread_mutex_t lock; /* clients[] (changed only by the server thread) and writes */
	struct ctl_client *clients[CTL_MAX_CLIENTS];
};

static int
subscribe(struct ctl_call *call, json_t *args, json_t **result, struct ctl_error *err)
{
	struct ctl_client *c = call->conn;

	(void)args;
	if (c == NULL)
		return ctl_fail(err, "unsupported", "events/subscribe needs a socket connection");
	c->subscribed = true;
	*result = json_pack("{s:b}", "subscribed", 1);
	return 0;
}

struct ctl_server *
ctl_server_new(const char *path, size_t max_line)
{
	return ctl_server_adopt(path, -1, max_line);
}

struct ctl_server *
ctl_server_adopt(const char *path, int lfd, size_t max_line)
{
	struct ctl_server *srv;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev = { .events = EPOLLIN };

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return NULL;
	snprintf(srv->path, sizeof(srv->path), "%s", path);
	srv->max_line = max_line ? max_line : CTL_MAX_LINE_DEFAULT;
	srv->lfd = srv->efd = srv->wakefd = -1;
	{
		/* recursive: an event may be emitted from inside a reply path */
		pthread_mutexattr_t ma;
		pthread_mutexattr_init(&ma);
		pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&srv->lock, &ma);
		pthread_mutexattr_destroy(&ma);
	}
	srv->reg = ctl_registry_new();
	if (srv->reg == NULL)
		goto fail;
	ctl_register(srv->reg, "events/subscribe",
		     "events/subscribe: send this connection every event as {event,data}", NULL,
		     subscribe, srv);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (lfd >= 0) {
		/* a socket another process of this program listened on (it stays bound to path) */
		srv->lfd = lfd;
		if (fcntl(lfd, F_SETFD, FD_CLOEXEC) != 0 ||
		    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) != 0)
			goto fail;
	} else {
		srv->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (srv->lfd < 0)
			goto fail;
		unlink(path);
		if (bind(srv->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(srv->lfd, 16) < 0)
			goto fail;
		chmod(path, 0600);
	}
	srv->efd = epoll_create1(EPOLL_CLOEXEC);
	srv->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->efd < 0 || srv->wakefd < 0)
		goto fail;
	ev.data.ptr = NULL;
	if (epoll_ctl(srv->efd, EPOLL_CTL_ADD, srv->lfd, &ev) < 0)
		goto fail;
	ev.data.ptr = &srv->wakefd;
	if (epoll_ctl(srv->efd, EPOLL_CTL_ADD, srv->wakefd, &ev) < 0)
		goto fail;
	return srv;
fail:
	{
		int e = errno;
		if (lfd >= 0) /* not ours to close or remove */
			srv->lfd = -1;
		ctl_server_free(srv);
		errno = e;
	}
	return NULL;
}

struct ctl_registry *
ctl_server_registry(struct ctl_server *srv)
{
	return srv->reg;
}

int
ctl_server_listen_fd(const struct ctl_server *srv)
{
	return srv->lfd;
}

void
ctl_server_hand_over(struct ctl_server *srv)
{
	srv->handed_over = true;
	epoll_ctl(srv->efd, EPOLL_CTL_DEL, srv->lfd, NULL);
	close(srv->lfd); /* the socket file is the new server's: not removed */
	srv->lfd = -1;
}

/* Write all of buf, waiting at most timeout_ms in total for the peer to drain. */
static int
write_all(int fd, const char *buf, size_t len, int timeout_ms)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && timeout_ms > 0) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			if (poll(&p, 1, timeout_ms) <= 0)
				return -ETIMEDOUT;
			timeout_ms /= 2;
			continue;
		}
		return -EPIPE;
	}
	return 0;
}

static int
send_json(int fd, json_t *obj, int timeout_ms)
{
	char *s = json_dumps(obj, JSON_COMPACT);
	size_t len;
	int rc;

	if (s == NULL)
		return -ENOMEM;
	len = strlen(s);
	s[len] = '\n'; /* json_dumps allocates len+1: reuse the NUL for the newline */
	rc = write_all(fd, s, len + 1, timeout_ms);
	free(s);
	return rc;
}

static void
drop_client(struct ctl_server *srv, int slot)
{
	struct ctl_client *c = srv->clients[slot];

	epoll_ctl(srv->efd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->buf);
	free(c);
	srv->clients[slot] = NULL;
}

static void
accept_clients(struct ctl_server *srv)
{
	for (;;) {
		int fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		int slot;
		struct ctl_client *c;
		struct epoll_event ev = { .events = EPOLLIN };

		if (fd < 0)
			return;
		pthread_mutex_lock(&srv->lock);
		for (slot = 0; slot < CTL_MAX_CLIENTS && srv->clients[slot]; slot++)
			;
		c = slot < CTL_MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
		if (c != NULL)
			c->buf = malloc(srv->max_line);
		if (c == NULL || c->buf == NULL) {
			json_t *e = json_pack("{s:n,s:b,s:{s:s,s:s}}", "id", "ok", 0, "error",
					      "code", "busy", "message", "too many control clients");
			send_json(fd, e, 0);
			json_decref(e);
			close(fd);
			if (c)
				free(c);
			pthread_mutex_unlock(&srv->lock);
			continue;
		}
		c->fd = fd;
		srv->clients[slot] = c;
		ev.data.ptr = c;
		epoll_ctl(srv->efd, EPOLL_CTL_ADD, fd, &ev);
		pthread_mutex_unlock(&srv->lock);
	}
}

/* Handle every complete line in the client's buffer. Handlers run without srv->lock, so a
 * handler may wait for a lock of its own that another thread holds while emitting an event;
 * only the writes are serialised with ctl_emit. */
static void
reply_json(struct ctl_server *srv, struct ctl_client *c, json_t *reply)
{
	pthread_mutex_lock(&srv->lock);
	send_json(c->fd, reply, 1000);
	pthread_mutex_unlock(&srv->lock);
	json_decref(reply);
}

static void
process_lines(struct ctl_server *srv, struct ctl_client *c)
{
	size_t start = 0;

	for (size_t i = 0; i < c->len; i++) {
		if (c->buf[i] != '\n')
			continue;
		if (srv->handed_over) /* the rest is for the server that took over */
			break;
		if (c->skipping)
			c->skipping = false;
		else if (i > start)
			reply_json(srv, c, ctl_handle_line(srv->reg, c->buf + start, i - start, c));
		start = i + 1;
	}
	memmove(c->buf, c->buf + start, c->len - start);
	c->len -= start;
	if (c->len == srv->max_line) { /* full and no newline: oversized line */
		if (!c->skipping) {
			char msg[96];
			snprintf(msg, sizeof(msg), "request line longer than %zu bytes",
				 srv->max_line);
			reply_json(srv, c, json_pack("{s:n,s:b,s:{s:s,s:s}}", "id", "ok", 0, "error",
						     "code", "line-too-long", "message", msg));
		}
		c->skipping = true;
		c->len = 0;
	}
}

static void *
server_thread(void *arg)
{
	struct ctl_server *srv = arg;
	struct epoll_event evs[16];

	if (srv->thread_init != NULL)
		srv->thread_init(srv->thread_init_arg);
	while (srv->running && !srv->handed_over) {
		int n = epoll_wait(srv->efd, evs, 16, -1);
		for (int i = 0; i < n; i++) {
			struct ctl_client *c = evs[i].data.ptr;
			if (c == NULL) {
				accept_clients(srv);
				continue;
			}
			if ((void *)c == (void *)&srv->wakefd)
				continue;
			/* only this thread frees clients, so c is valid here */
			ssize_t r = read(c->fd, c->buf + c->len, srv->max_line - c->len);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				pthread_mutex_lock(&srv->lock);
				for (int slot = 0; slot < CTL_MAX_CLIENTS; slot++)
					if (srv->clients[slot] == c)
						drop_client(srv, slot);
				pthread_mutex_unlock(&srv->lock);
			} else if (r > 0) {
				c->len += (size_t)r;
				process_lines(srv, c);
			}
			if (srv->handed_over)
				break;
		}
	}
	if (srv->handed_over) { /* its clients connect again, to the server that took over */
		pthread_mutex_lock(&srv->lock);
		for (int slot = 0; slot < CTL_MAX_CLIENTS; slot++)
			if (srv->clients[slot])
				drop_client(srv, slot);
		pthread_mutex_unlock(&srv->lock);
	}
	return NULL;
}

void
ctl_server_on_thread_start(struct ctl_server *srv, void (*fn)(void *), void *arg)
{
	srv->thread_init = fn;
	srv->thread_init_arg = arg;
}

int
ctl_server_start(struct ctl_server *srv)
{
	int rc;

	srv->running = true;
	rc = pthread_create(&srv->thread, NULL, server_thread, srv);
	if (rc != 0) {
		srv->running = false;
		return -rc;
	}
	pthread_setname_np(srv->thread, "ctl");
	return 0;
}

void
ctl_server_free(struct ctl_server *srv)
{
	if (srv == NULL)
		return;
	if (srv->running) {
		uint64_t one = 1;
		srv->running = false;
		if (write(srv->wakefd, &one, sizeof(one)) < 0)
			perror("ctl: wake");
		pthread_join(srv->thread, NULL);
	}
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		if (srv->clients[i])
			drop_client(srv, i);
	if (srv->lfd >= 0) {
		close(srv->lfd);
		unlink(srv->path);
	}
	if (srv->efd >= 0)
		close(srv->efd);
	if (srv->wakefd >= 0)
		close(srv->wakefd);
	ctl_registry_free(srv->reg);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}

void
ctl_emit(struct ctl_server *srv, const char *event, json_t *data)
{
	json_t *ev;

	if (srv == NULL) { /* not serving (start-up, shutdown): nobody to tell */
		json_decref(data);
		return;
	}
	ev = json_pack("{s:s,s:o}", "event", event, "data", data ? data : json_object());

	if (ev == NULL)
		return;
	pthread_mutex_lock(&srv->lock);
	for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
		struct ctl_client *c = srv->clients[i];
		/* a stuck reader is cut off; the server thread sees the EOF and frees it */
		if (c != NULL && c->subscribed && send_json(c->fd, ev, 50) != 0) {
			c->subscribed = false;
			shutdown(c->fd, SHUT_RDWR);
		}
	}
	pthread_mutex_unlock(&srv->lock);
	json_decref(ev);
}
