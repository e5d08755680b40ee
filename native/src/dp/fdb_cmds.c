/* SPDX-License-Identifier: Apache-2.0
 * The FDB's control commands: fdb/export and fdb/import, so a new generation starts with the
 * addresses the old one learned (the seeds' "memory status sync", DESIGN.md §3). fdb.c is the
 * table itself and knows no generation; here its ports are named as this generation's VMs
 * and uplink (vm.c).
 */
#include "dp.h"

static const struct dp_fdb_names fdb_names = {
	.port_name = dp_port_name,
	.port_lookup = dp_port_lookup,
};

static int
cmd_fdb_export(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	*result = json_pack("{s:s,s:o}", "gen_id", dp.gen_id, "entries",
			    dp_fdb_export(dp.fdb, &fdb_names));
	return 0;
}

static const struct ctl_arg fdb_import_args[] = {
	{ "entries", CTL_T_ARRAY, true },
	{ NULL },
};

/* fdb/import: all or nothing (dp_fdb_import checks every entry first); VM entries for VMs
 * this generation does not have are listed back as absent_vms. */
static int
cmd_fdb_import(struct ctl_call *c, json_t *args, json_t **result, struct ctl_error *err)
{
	json_t *absent = json_array();
	int n = dp_fdb_import(dp.fdb, json_object_get(args, "entries"), &fdb_names, absent, err);

	if (n < 0) {
		json_decref(absent);
		return -1;
	}
	*result = json_pack("{s:i,s:o,s:I}", "imported", n, "absent_vms", absent, "fdb_entries",
			    (json_int_t)dp_fdb_count(dp.fdb));
	return 0;
}

static const struct ctl_command fdb_cmds[] = {
	{ "fdb/export", "fdb/export: the forwarding table as JSON entries", NULL, cmd_fdb_export },
	{ "fdb/import", "fdb/import {entries}: add learned entries from fdb/export of another "
	  "generation; all or nothing", fdb_import_args, cmd_fdb_import },
};

int
dp_fdb_ctl_register(struct ctl_registry *reg)
{
	return ctl_register_table(reg, fdb_cmds, RTE_DIM(fdb_cmds), NULL);
}
