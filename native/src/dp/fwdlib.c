/* SPDX-License-Identifier: Apache-2.0
 * Loading the forwarding stage: dlopen the shared object, find its ops table, refuse an ABI
 * this binary does not speak.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_log.h>

#include "dp.h"

int
dp_fwd_load(const char *path)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	const struct hitless_fwd_ops *ops;

	if (h == NULL) {
		fprintf(stderr, "hitless-dp: cannot load forwarding stage %s: %s\n", path,
			dlerror());
		return -ENOENT;
	}
	ops = dlsym(h, HITLESS_FWD_SYMBOL);
	if (ops == NULL || ops->abi != HITLESS_FWD_ABI || ops->classify == NULL) {
		fprintf(stderr, "hitless-dp: %s: no '%s' table of ABI %d\n", path,
			HITLESS_FWD_SYMBOL, HITLESS_FWD_ABI);
		dlclose(h);
		return -EPROTO;
	}
	__atomic_store_n(&dp.fwd, ops, __ATOMIC_RELEASE);
	dp.fwd_handle = h;
	if (path != dp.fwd_path)
		snprintf(dp.fwd_path, sizeof(dp.fwd_path), "%s", path);
	return 0;
}
