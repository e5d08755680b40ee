/* SPDX-License-Identifier: Apache-2.0
 * The same numbers as stats/show and gen/info, through DPDK telemetry, so dpdk-telemetry.py
 * (or any telemetry client) can read a generation without speaking our control protocol:
 *   /hitless/gen          generation info
 *   /hitless/vms          VM names
 *   /hitless/stats,<vm>   one VM's counters
 * Both views are built from one JSON producer so they cannot disagree.
 */
#include <string.h>

#include <rte_telemetry.h>

#include "dp.h"

/* Copy a JSON object's scalar members (and one level of nested objects, flattened as a_b)
 * into a telemetry dict. */
static void
json_to_tel(struct rte_tel_data *d, json_t *obj, const char *prefix)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		char name[RTE_TEL_MAX_STRING_LEN];

		snprintf(name, sizeof(name), "%s%s%s", prefix, prefix[0] ? "_" : "", key);
		if (json_is_integer(v) && json_integer_value(v) >= 0)
			rte_tel_data_add_dict_u64(d, name, (uint64_t)json_integer_value(v));
		else if (json_is_boolean(v))
			rte_tel_data_add_dict_u64(d, name, json_is_true(v));
		else if (json_is_string(v))
			rte_tel_data_add_dict_string(d, name, json_string_value(v));
		else if (json_is_object(v) && prefix[0] == '\0')
			json_to_tel(d, v, key);
	}
}

static int
tel_gen(const char *cmd, const char *params, struct rte_tel_data *d)
{
	json_t *info = dp_gen_info_json();

	rte_tel_data_start_dict(d);
	json_to_tel(d, info, "");
	json_decref(info);
	return 0;
}

static int
tel_vms(const char *cmd, const char *params, struct rte_tel_data *d)
{
	rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
	for (int s = 0; s < DP_MAX_VMS; s++)
		if (__atomic_load_n(&dp.vms[s].in_use, __ATOMIC_ACQUIRE))
			rte_tel_data_add_array_string(d, dp.vms[s].name);
	return 0;
}

static int
tel_stats(const char *cmd, const char *params, struct rte_tel_data *d)
{
	struct dp_vm *vm;
	json_t *st;

	if (params == NULL || (vm = dp_vm_find(params)) == NULL)
		return -1;
	st = dp_stats_json(vm);
	rte_tel_data_start_dict(d);
	json_to_tel(d, json_object_get(json_object_get(st, "vms"), vm->name), "");
	json_decref(st);
	return 0;
}

int
dp_telemetry_register(void)
{
	int rc = 0;

	rc |= rte_telemetry_register_cmd("/hitless/gen", tel_gen,
					 "Generation info. No parameters");
	rc |= rte_telemetry_register_cmd("/hitless/vms", tel_vms, "VM names. No parameters");
	rc |= rte_telemetry_register_cmd("/hitless/stats", tel_stats,
					 "Counters of one VM. Parameters: VM name");
	return rc;
}
