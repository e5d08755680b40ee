/* SPDX-License-Identifier: Apache-2.0
 * hitless-keeper: owns each VM's frontend-facing vhost-user socket, relays the control
 * messages to the generation (hitless-dp) serving the VM, and moves the live session between
 * generations (handoff, rollback, failover) without the frontend seeing a disconnect.
 *
 * Threads: the relay thread (relay.c) runs one epoll loop over every socket; the control
 * thread (ctl_cmds.c) serves commands. Both work under kp.lock, and a frontend request is
 * relayed whole (request, backend reply, reply to the frontend) under it, so a handoff that
 * holds the lock never interleaves with a pending frontend request.
 *
 * Files, each calling only those below it:
 *   main.c      options, control socket, the relay loop, shutdown
 *   ctl_cmds.c  the control commands, one table
 *   relay.c     the event loop and its handlers: frontend requests relayed, backend deaths,
 *               the watch timer
 *   gen.c       generations: attach/detach, heartbeat and death (its sessions fail over)
 *   handoff.c   moving a session: pre-load, handoff, failover
 *   vm.c        VMs: add/del, frontend attach/close
 *   backend.c   a VM's connections to generations: connect, close, requests and replies
 *   upgrade.c   keeper/upgrade: the state and fds handed to a new keeper binary, and taken
 *               over by it (--take-over)
 *   pace.c      the pacer thread: keeps a stock OVS-DPDK generation's vhost event thread awake
 *               through a switch (its own lock; never kp.lock)
 *   evloop.c    the epoll set and watch timer every socket is added to
 *   session.c, vu.c  the vhost-user session state and frames (keeper_core, fuzzed)
 */
#ifndef HITLESS_KEEPER_H
#define HITLESS_KEEPER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include "ctl.h"
#include "session.h"
#include "util.h"

#define KP_MAX_GENS 4
#define KP_MAX_VMS 64
#define KP_REPLY_TIMEOUT_MS 2000
#define KP_RECONNECT_US 200000 /* client mode: how often a frontend-owned socket is tried again */
#define KP_DEATH_RECHECK_US 100 /* a generation's loop exited: how soon its threads are looked at again */
#define KP_ACCEPT_WAIT_MS 3000 /* listen-mode generation: how long its port may take to connect */

struct kp_heartbeat; /* gen.c */

struct kp_gen {
	bool in_use;
	bool dead;
	char name[HL_NAME_MAX + 1];
	char run_dir[80];
	pid_t pid;
	struct kp_heartbeat *hb;
	/* the generation's vhost ports are clients (OVS-DPDK's dpdkvhostuserclient): the keeper
	 * listens at <run_dir>/vhost/<vm>.sock and accepts their connections, rather than
	 * connecting to sockets the generation listens on (hitless-dp) */
	bool listen;
};

/* The keeper's connection to one generation for one VM. */
struct kp_bconn {
	int fd;             /* -1: none */
	uint64_t epoch;     /* session epoch it was pre-loaded at */
	bool preloaded;
	uint64_t features;  /* what the generation offers */
	uint64_t protocol_features;
};

struct kp_timing {
	uint64_t request_ns, quiesce_ns, bases_ns, replayed_ns, resumed_ns;
};

struct kp_vm {
	bool in_use;
	char name[HL_NAME_MAX + 1];
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool client;        /* connect to the frontend's socket (QEMU server=on) */
	int lfd;            /* listening socket (server mode) */
	int ffd;            /* the frontend connection, -1 when none */
	uint64_t next_connect_ns; /* client mode: next reconnect attempt */
	int serving;        /* generation index serving the VM, -1 when none */
	int home;           /* generation new frontend connections go to */
	struct kp_bconn b[KP_MAX_GENS];
	int blfd[KP_MAX_GENS];  /* listen-mode generations: where their port for the VM connects */
	struct kp_state st;
	/* generations (bit per index) that were pre-loaded when the guest renegotiated (a driver
	 * reload, a reboot): pre-loaded again once the session is movable and quiet */
	uint32_t want_preload;
	uint64_t last_frontend_ns;  /* when the frontend's last request arrived */
	uint64_t connects, disconnects, handoffs, failovers, refused, announces;
	/* the VM's MAC, when given: announced (RARP) by a listen-mode generation it moves to */
	uint8_t mac[6];
	bool has_mac;
	char last_anomaly[300];
};

struct keeper {
	pthread_mutex_t lock;
	char run_dir[80];
	uint32_t watch_us;          /* heartbeat poll period */
	uint32_t stall_us;          /* heartbeat age that triggers the exit check */
	int standby;                /* failover target generation, -1 none */
	uint32_t debug_pause_ms;    /* fault injection: pause inside the next handoff */
	volatile bool quit;
	/* keeper/upgrade succeeded: the new keeper (pid successor) serves; this one only exits */
	volatile bool handed_over;
	pid_t successor;
	struct ctl_server *ctl;
	struct kp_gen gens[KP_MAX_GENS];
	struct kp_vm vms[KP_MAX_VMS];
};

extern struct keeper kp;

static inline int kp_vm_index(const struct kp_vm *vm) { return (int)(vm - kp.vms); }

/* evloop.c */
enum kp_ev_kind { KP_EV_LISTEN = 1, KP_EV_FRONTEND, KP_EV_BACKEND, KP_EV_TIMER, KP_EV_WAKE };
/* One event as the relay sees it: what kind of socket, whose (VM slot, generation index). */
struct kp_event {
	enum kp_ev_kind kind;
	int vm, gen;
};
int kp_ev_init(void);
void kp_ev_timer(uint32_t period_us);
/* Wake the relay from another thread (a generation's death watch, gen.c). */
void kp_ev_wake(void);
void kp_ev_add(int fd, enum kp_ev_kind kind, int vm, int gen);
void kp_ev_del(int fd);
int kp_ev_wait(struct kp_event *evs, int max, int timeout_ms);

/* backend.c */
void kp_vm_anomaly(struct kp_vm *vm, const char *what);
/* A connected Unix stream socket (CLOEXEC, blocking), or -errno. */
int kp_unix_connect(const char *path);
void kp_bconn_close(struct kp_vm *vm, int gi);
int kp_bconn_connect(struct kp_vm *vm, int gi);
/* A listen-mode generation's socket for the VM (<run_dir>/vhost/<vm>.sock): opened when both
 * exist, closed (and removed) when either goes. 0 or -errno. */
int kp_blisten_open(struct kp_vm *vm, int gi);
void kp_blisten_close(struct kp_vm *vm, int gi);
/* Send a request to a backend; when it expects a reply (or need_reply is set and REPLY_ACK is
 * on), wait for it and check it. reply may be NULL. 0 or -errno/-EPROTO. */
int kp_backend_call(struct kp_vm *vm, int gi, struct vu_msg *req, struct vu_msg *reply);
/* The same in two halves, so several requests can be in flight (the backend answers in
 * order): send returns 1 when a reply will follow, 0 when none, or -errno; collect reads
 * and checks the reply to `request` (sent with `need_reply` or not). */
int kp_backend_send(struct kp_vm *vm, int gi, struct vu_msg *req);
int kp_backend_collect(struct kp_vm *vm, int gi, uint32_t request, struct vu_msg *reply);

/* vm.c */
int kp_vm_add(const char *name, const char *sock, bool client, int gen, const uint8_t *mac,
	      struct ctl_error *err);
int kp_vm_del(const char *name, struct ctl_error *err);
struct kp_vm *kp_vm_find(const char *name);
void kp_frontend_attach(struct kp_vm *vm, int fd);
int kp_frontend_gen(const struct kp_vm *vm);
void kp_frontend_close(struct kp_vm *vm, const char *why);
json_t *kp_vm_json(const struct kp_vm *vm, bool detail);

/* handoff.c */
int kp_preload(struct kp_vm *vm, int gi, struct ctl_error *err);
int kp_handoff(struct kp_vm *vm, int to, json_t **result, struct ctl_error *err);
int kp_failover(struct kp_vm *vm, const char *cause);
int kp_failover_target(int from);

/* gen.c */
int kp_gen_attach(const char *name, const char *run_dir, bool listen, struct ctl_error *err);
int kp_gen_detach(const char *name, struct ctl_error *err);
int kp_gen_find(const char *name);
void kp_gen_watch(uint64_t now);
void kp_gen_share_update(void);
int kp_fence_peers_of(int gi);
void kp_gen_connection_lost(int gi);
/* The timer period the keeper needs now (us, 0: none): the heartbeat watch while a generation
 * serves VMs, a reconnect tick while a client-mode frontend is away. */
uint32_t kp_timer_needed(void);
json_t *kp_gen_json(int gi);

/* pace.c: a listen-mode generation's pace port (<run_dir>/vhost/.pace.sock; see pace.c) */
#define KP_PACE_SOCK ".pace.sock"
int kp_pace_open(int gi, const char *run_dir);
void kp_pace_close(int gi);
/* Pace gi's event thread from now: returns how long (ns) until it is surely awake (0: now). */
uint64_t kp_pace_warm(int gi);
/* A switch to gi is done: pacing ends shortly. */
void kp_pace_settle(int gi);
json_t *kp_pace_json(int gi);
void kp_pace_stop(void);

/* pace.c, across a keeper upgrade (upgrade.c): the pacer stopped while the state is written
 * (and started again when the upgrade fails); a generation's pace port as state, with its fds
 * passed to keep(); the same taken over by the new keeper (0, or -1: not as written). */
void kp_pace_freeze(void);
void kp_pace_thaw(void);
json_t *kp_pace_save(int gi, int (*keep)(void *arg, int fd), void *arg);
int kp_pace_adopt(int gi, json_t *state);

/* gen.c: a generation as the old keeper had it (upgrade.c). 0 or -1. */
int kp_gen_adopt(int gi, const char *name, const char *run_dir, pid_t pid, bool listen, bool dead);

/* upgrade.c */
int kp_state_format(void);
/* The fds a state names (kept across exec, or stored with systemd). */
struct kp_fdlist {
	int n, cap;
	int *fd;
};
/* The keeper's state as JSON text (malloc'd; NULL if it could not be written whole), every fd
 * it names added to fl. Under kp.lock. */
char *kp_state_text(struct kp_fdlist *fl);
/* keeper/upgrade {binary}: under kp.lock. 0 (handed over: kp.handed_over) or -1. */
int kp_upgrade(const char *binary, json_t **result, struct ctl_error *err);
/* The new keeper: take the state from state_fd (closed); ctl_fd: the control socket's
 * listening fd. 0, or -1 with err saying why (nothing of the sockets touched). */
int kp_take_over(int state_fd, int *ctl_fd, char *err, size_t errlen);

/* fdstore.c: systemd's fd store (--fdstore). start: 0, or -1 with err (no notify socket).
 * sync: under kp.lock, after a change (force) or now and then; the state and its fds stored as
 * they are now. restore: at start-up, before any fd is opened: the stored fds put back at
 * their numbers; 1 with *state_fd to take over, 0 (nothing stored), -1 with err (the store is
 * emptied). forget: the store emptied (a take-over of it failed). */
#define KP_FDSTORE_ENV "HITLESS_KEEPER_FDSTORE" /* the store's names, to an upgrade's new keeper */
int kp_fdstore_start(char *err, size_t errlen);
/* What is stored under which name, for KP_FDSTORE_ENV (malloc'd). */
char *kp_fdstore_names(void);
bool kp_fdstore_enabled(void);
void kp_fdstore_sync(bool force);
int kp_fdstore_restore(int *state_fd, char *err, size_t errlen);
void kp_fdstore_forget(void);

/* relay.c */
void kp_relay_run(void);

/* ctl_cmds.c: 0, or the first error of ctl_register() (ctl_registry_refused names it) */
int kp_ctl_register(struct ctl_registry *reg);

#endif
