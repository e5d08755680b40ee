/* SPDX-License-Identifier: Apache-2.0
 * Shared objects lib/swap must refuse, each built from this file with one macro:
 *  FIXTURE_ABI      a stage table of another ABI (a stage built for a different datapath);
 *  FIXTURE_NO_OPS   a shared object that is not a forwarding stage at all;
 *  FIXTURE_MIGRATE  a stage of state layout 9 whose migrate hook fails on every entry;
 *  FIXTURE_NOMIG    a stage of state layout 9 with no migrate hook (nobody converts to it).
 * The tests check that each refusal names its cause and leaves the old stage forwarding.
 */
#include <errno.h>

#include "hitless_fwd.h"

#if defined(FIXTURE_NO_OPS)
int hitless_fwd_fixture_marker = 1;
#else
static void
drop_all(const struct hitless_fwd_env *env, uint16_t src, struct rte_mbuf **pkts, uint16_t n,
	 uint16_t *dst)
{
	for (uint16_t i = 0; i < n; i++)
		dst[i] = FWD_DST_DROP;
}

static uint64_t
enc(const struct hitless_fwd_entry *e)
{
	return (uint64_t)e->port | (uint64_t)e->kind << 16;
}

static void
dec(uint64_t w, struct hitless_fwd_entry *e)
{
	e->port = (uint16_t)(w & 0xffff);
	e->kind = (uint8_t)(w >> 16);
	e->seen_s = 0;
}

#if defined(FIXTURE_MIGRATE)
static int
fail_migrate(uint32_t from, uint32_t to, uint64_t w, uint32_t now_s, uint64_t *out)
{
	return -ERANGE;
}
#endif

const struct hitless_fwd_ops hitless_fwd_ops = {
#if defined(FIXTURE_ABI)
	.abi = HITLESS_FWD_ABI + 97,
	.layout = 1,
#else
	.abi = HITLESS_FWD_ABI,
	.layout = 9,
#endif
#if defined(FIXTURE_MIGRATE)
	.migrate = fail_migrate,
#endif
	.name = "fixture",
	.version = "0.0.0-fixture",
	.classify = drop_all,
	.encode = enc,
	.decode = dec,
};
#endif
