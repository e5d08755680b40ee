/* SPDX-License-Identifier: Apache-2.0
 * Memory mapped ahead of a switch: a VM's guest memory, and the peer link's buffers.
 *
 * rte_vhost maps a VM's memory table (SET_MEM_TABLE: a keeper pre-load, long before the
 * switch) without touching it, so this process's page tables gain each page only when the
 * packet loop first touches it: after a switch, hundreds of page faults in the loop (~450 per
 * switch for a virtio_user guest here, measured), during which it falls behind a guest that
 * sends 1 Mpps and the guest's ring overflows. So as soon as a memory table is mapped, a
 * thread of its own maps every page of it the guest has already touched (resident, by
 * mincore) with MADV_POPULATE_READ, and no other page (mapping a page the guest never touched
 * would allocate it). A guest's table is mapped in the time that takes (bench/run handoff
 * --guest-mem reports it beside the window), outside the switch.
 *
 * Only system calls (mincore, madvise) touch the mapping from that thread: if rte_vhost
 * replaces or unmaps it meanwhile, they fail; they never fault.
 *
 * The peer link's shared buffers (memif regions, mapped when its other end connects, after
 * main() locked this process's memory) likewise: once the link is up, a thread maps them,
 * or the first VM whose traffic crosses the link pays their faults in the loop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <rte_ethdev.h>
#include <rte_vhost.h>

#include "dp.h"

#define PREFAULT_CHUNK (1ull << 30) /* mincore's view: 1 GB at a time (a 256 KB vector) */
/* one madvise maps at most this much: it holds the process's mmap lock (for reading) while it
 * works, and a writer waiting behind it (an mmap of the vhost thread's) would hold up every
 * other taker of the lock meanwhile */
#define PREFAULT_STEP (64ull << 20)
#define HUGETLBFS_MAGIC 0x958458f6

struct prefault_job {
	struct dp_vm *vm;
	uint64_t seq; /* this job's number: a later table's job makes its figures stale */
	struct rte_vhost_memory *mem;
};

static uint64_t jobs; /* atomic: job numbers, never reused (a VM slot may be) */

/* Map [addr, addr+len) in steps: 0 or -errno. */
static int
populate(uint8_t *addr, uint64_t len)
{
	for (uint64_t off = 0; off < len; off += PREFAULT_STEP)
		if (madvise(addr + off, RTE_MIN(PREFAULT_STEP, len - off), MADV_POPULATE_READ) != 0)
			return -errno;
	return 0;
}

/* Map the resident pages of [addr, addr+len): returns how many were mapped, or -errno. */
static int64_t
populate_resident(uint8_t *addr, uint64_t len, unsigned char *vec)
{
	const uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t pages = len / pg, mapped = 0;
	int rc;

	if (mincore(addr, len, vec) != 0)
		return -errno;
	for (uint64_t i = 0; i < pages;) {
		uint64_t j;

		if (!(vec[i] & 1)) {
			i++;
			continue;
		}
		for (j = i; j < pages && (vec[j] & 1); j++)
			;
		if ((rc = populate(addr + i * pg, (j - i) * pg)) != 0)
			return rc;
		mapped += j - i;
		i = j;
	}
	return (int64_t)mapped;
}

/* A region of hugetlbfs pages (a guest with hugepage memory, as production guests have):
 * mincore reports this process's page tables there, not the file's pages, so the whole region
 * is mapped (its pages are the guest's reservation: mapping allocates none beyond it). */
static bool
hugetlb(int fd)
{
	struct statfs st;

	return fd >= 0 && fstatfs(fd, &st) == 0 && (uint32_t)st.f_type == HUGETLBFS_MAGIC;
}

static void *
prefault_run(void *arg)
{
	struct prefault_job *job = arg;
	struct dp_vm *vm = job->vm;
	uint64_t t0 = hl_now_ns(), mapped = 0;
	unsigned char *vec = malloc(PREFAULT_CHUNK / 4096);
	int err = 0;

	for (uint32_t r = 0; vec != NULL && r < job->mem->nregions && err == 0; r++) {
		const struct rte_vhost_mem_region *reg = &job->mem->regions[r];
		uint64_t size = reg->mmap_size ? reg->mmap_size : reg->size;
		uint8_t *base = reg->mmap_addr ? reg->mmap_addr : (uint8_t *)(uintptr_t)reg->host_user_addr;

		if (hugetlb(reg->fd)) {
			err = -populate(base, size);
			mapped += err == 0 ? size / (uint64_t)sysconf(_SC_PAGESIZE) : 0;
			continue;
		}
		for (uint64_t off = 0; off < size && err == 0; off += PREFAULT_CHUNK) {
			int64_t n = populate_resident(base + off, RTE_MIN(PREFAULT_CHUNK, size - off), vec);

			if (n < 0)
				err = (int)-n;
			else
				mapped += (uint64_t)n;
		}
	}
	if (vec == NULL)
		err = ENOMEM;
	/* the figures of the VM's latest table only */
	if (__atomic_load_n(&vm->prefault.seq, __ATOMIC_ACQUIRE) == job->seq) {
		__atomic_store_n(&vm->prefault.pages, mapped, __ATOMIC_RELAXED);
		__atomic_store_n(&vm->prefault.err, err, __ATOMIC_RELAXED);
		__atomic_store_n(&vm->prefault.took_ns, hl_now_ns() - t0, __ATOMIC_RELAXED);
		__atomic_store_n(&vm->prefault.done, true, __ATOMIC_RELEASE);
	}
	free(vec);
	free(job->mem);
	free(job);
	return NULL;
}

/* rte_vhost mapped a memory table for device vid (vm.c, after SET_MEM_TABLE): the pages of
 * it the guest has touched are mapped by a thread of their own. */
void
dp_prefault_table(int vid)
{
	struct prefault_job *job;
	struct dp_vm *vm = NULL;
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	for (int s = 0; s < DP_MAX_VMS && vm == NULL; s++)
		if (__atomic_load_n(&dp.vms[s].in_use, __ATOMIC_ACQUIRE) &&
		    (__atomic_load_n(&dp.vms[s].arriving_vid, __ATOMIC_ACQUIRE) == vid || dp.vms[s].vid == vid))
			vm = &dp.vms[s];
	job = calloc(1, sizeof(*job));
	if (vm == NULL || job == NULL || rte_vhost_get_mem_table(vid, &job->mem) != 0) {
		free(job);
		return;
	}
	job->vm = vm;
	job->seq = __atomic_add_fetch(&jobs, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&vm->prefault.done, false, __ATOMIC_RELEASE);
	__atomic_store_n(&vm->prefault.seq, job->seq, __ATOMIC_RELEASE);
	/* at normal priority (the vhost thread may be real-time), detached, where the vhost
	 * thread may run (off the packet loop's CPU) */
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
	pthread_attr_setschedpolicy(&attr, SCHED_OTHER);
	pthread_attr_setschedparam(&attr, &(struct sched_param){ .sched_priority = 0 });
	if ((rc = pthread_create(&t, &attr, prefault_run, job)) != 0) {
		/* said, not hidden: the loop will fault this guest's pages in after the switch */
		fprintf(stderr, "hitless-dp: vm %s: guest memory not mapped ahead: no thread (%s)\n",
			vm->name, strerror(rc));
		__atomic_store_n(&vm->prefault.err, rc, __ATOMIC_RELAXED);
		__atomic_store_n(&vm->prefault.done, true, __ATOMIC_RELEASE);
		free(job->mem);
		free(job);
	} else {
		pthread_setname_np(t, "hl-prefault");
	}
	pthread_attr_destroy(&attr);
}

/* Map every memif region this process has now (their memfds' names in /proc/self/maps);
 * returns how many bytes. */
static uint64_t
populate_memif_regions(void)
{
	char line[512];
	uint64_t bytes = 0;
	FILE *f = fopen("/proc/self/maps", "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi;

		if (strstr(line, "/memfd:memif_region") == NULL || sscanf(line, "%lx-%lx", &lo, &hi) != 2)
			continue;
		if (madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) == 0)
			bytes += hi - lo;
	}
	fclose(f);
	return bytes;
}

/* The thread that waits for the peer link to come up: joined before the port goes (a call
 * into the port's driver after it has been closed would use freed memory). */
static pthread_t peer_thread;
static bool peer_thread_on;
static uint32_t peer_stop; /* atomic */

static void *
peer_prefault_run(void *arg)
{
	uint16_t port = (uint16_t)(uintptr_t)arg;
	struct rte_eth_link link;

	/* its regions exist once its other end connected: up to a minute (a standby started
	 * long before the generation it will pair with is not unusual) */
	for (int i = 0; i < 60000 && !__atomic_load_n(&peer_stop, __ATOMIC_ACQUIRE); i++) {
		if (rte_eth_link_get_nowait(port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP) {
			__atomic_store_n(&dp.peer_prefault_bytes, populate_memif_regions(), __ATOMIC_RELEASE);
			return NULL;
		}
		hl_sleep_ns(1000000);
	}
	return NULL;
}

/* The peer link (port) was attached: its buffers are mapped as soon as it comes up. */
void
dp_prefault_peer(uint16_t port)
{
	dp_prefault_peer_stop();
	__atomic_store_n(&dp.peer_prefault_bytes, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&peer_stop, 0, __ATOMIC_RELEASE);
	peer_thread_on = pthread_create(&peer_thread, NULL, peer_prefault_run, (void *)(uintptr_t)port) == 0;
	if (peer_thread_on)
		pthread_setname_np(peer_thread, "hl-peer-prefault");
}

/* The peer link is about to be closed: its waiting thread ends first. */
void
dp_prefault_peer_stop(void)
{
	if (!peer_thread_on)
		return;
	__atomic_store_n(&peer_stop, 1, __ATOMIC_RELEASE);
	pthread_join(peer_thread, NULL);
	peer_thread_on = false;
}
