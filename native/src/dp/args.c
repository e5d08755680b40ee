/* SPDX-License-Identifier: Apache-2.0
 * hitless-dp's own options (after EAL's, behind "--").
 */
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dp.h"

void
dp_usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [EAL args] -- --gen-id ID --run-dir DIR [options]\n"
		"       %s --version\n"
		"  --gen-id ID        name of this generation (1-32 of A-Z a-z 0-9 _ . -)\n"
		"  --run-dir DIR      control socket DIR/ctl.sock, VM sockets DIR/vhost/<vm>.sock\n"
		"  --uplink IFACE     uplink port: net_af_packet on IFACE (optional)\n"
		"  --peer SOCK,server|client  peer link to the host's other generation (memif)\n"
		"  --fwd-lib PATH     forwarding stage shared object (default: next to the binary)\n"
		"  --idle-max-us N    longest idle nap of the packet loop (default 200)\n"
		"  --idle-grace-us N  keep polling this long after the last packet (default 50)\n"
		"  --idle-deep-ms N   longest sleep while serving no VM; woken at once when one\n"
		"                     arrives (default 50)\n"
		"  --no-yield         never yield the core after a light iteration\n"
		"  --rt-prio N        SCHED_FIFO priority of the vhost-message thread, where it runs\n"
		"                     beside the packet loop (default 10; 0: normal priority)\n"
		"  --retry-us N       how long packets wait for a full guest RX ring (default 10000)\n"
		"  --transit-us N     how long packets wait for a VM on its way here (default 1000000)\n",
		prog, prog);
}

/* The forwarding stage ships beside the binary (install) or in the build tree's src/fwd. */
static void
default_fwd_path(char *out, size_t len)
{
	static const char *const rel[] = { "hitless-fwd-l2.so", "../fwd/hitless-fwd-l2.so",
					   "../lib/hitless/hitless-fwd-l2.so" };
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *dir;

	out[0] = '\0';
	if (n <= 0)
		return;
	exe[n] = '\0';
	dir = dirname(exe);
	for (size_t i = 0; i < RTE_DIM(rel); i++) {
		snprintf(out, len, "%s/%s", dir, rel[i]);
		if (access(out, R_OK) == 0)
			return;
	}
	snprintf(out, len, "hitless-fwd-l2.so");
}

int
dp_parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "gen-id", required_argument, NULL, 'g' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "uplink", required_argument, NULL, 'u' },
		{ "peer", required_argument, NULL, 'p' },
		{ "fwd-lib", required_argument, NULL, 'f' },
		{ "idle-max-us", required_argument, NULL, 'i' },
		{ "retry-us", required_argument, NULL, 't' },
		{ "transit-us", required_argument, NULL, 'T' },
		{ "idle-grace-us", required_argument, NULL, 'G' },
		{ "no-yield", no_argument, NULL, 'Y' },
		{ "idle-deep-ms", required_argument, NULL, 'D' },
		{ "rt-prio", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	dp.idle_max_us = 200;
	dp.rt_prio = 10;
	dp.idle_grace_us = 50;
	dp.idle_deep_ms = 50;
	dp.yield = true;
	dp.retry_us = 10000;
	dp.transit_us = 1000000;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'g':
			if (!hl_valid_name(optarg)) {
				fprintf(stderr, "hitless-dp: --gen-id: '%s' is not a valid name\n",
					optarg);
				return -1;
			}
			snprintf(dp.gen_id, sizeof(dp.gen_id), "%s", optarg);
			break;
		case 'r':
			if (strlen(optarg) >= sizeof(dp.run_dir)) {
				fprintf(stderr, "hitless-dp: --run-dir: longer than %zu bytes\n",
					sizeof(dp.run_dir) - 1);
				return -1;
			}
			snprintf(dp.run_dir, sizeof(dp.run_dir), "%s", optarg);
			break;
		case 'u':
			if (strlen(optarg) >= sizeof(dp.uplink_iface)) {
				fprintf(stderr, "hitless-dp: --uplink: name too long\n");
				return -1;
			}
			snprintf(dp.uplink_iface, sizeof(dp.uplink_iface), "%s", optarg);
			break;
		case 'p': {
			const char *comma = strrchr(optarg, ',');
			size_t len = comma ? (size_t)(comma - optarg) : 0;
			if (comma == NULL || len == 0 || len >= sizeof(dp.peer_sock) ||
			    (strcmp(comma, ",server") != 0 && strcmp(comma, ",client") != 0)) {
				fprintf(stderr, "hitless-dp: --peer: expected SOCKET,server or SOCKET,client\n");
				return -1;
			}
			snprintf(dp.peer_sock, sizeof(dp.peer_sock), "%.*s", (int)len, optarg);
			dp.peer_server = strcmp(comma, ",server") == 0;
			break;
		}
		case 'f':
			snprintf(dp.fwd_path, sizeof(dp.fwd_path), "%s", optarg);
			break;
		case 'i':
			if (hl_parse_u32("hitless-dp", "--idle-max-us", optarg, 1, 100000, &dp.idle_max_us) != 0)
				return -1;
			break;
		case 'R':
			if (hl_parse_u32("hitless-dp", "--rt-prio", optarg, 0, 99, &dp.rt_prio) != 0)
				return -1;
			break;
		case 'T':
			if (hl_parse_u32("hitless-dp", "--transit-us", optarg, 0, 10000000, &dp.transit_us) != 0)
				return -1;
			break;
		case 'D':
			if (hl_parse_u32("hitless-dp", "--idle-deep-ms", optarg, 1, 10000, &dp.idle_deep_ms) != 0)
				return -1;
			break;
		case 'Y':
			dp.yield = false;
			break;
		case 'G':
			if (hl_parse_u32("hitless-dp", "--idle-grace-us", optarg, 0, 1000000, &dp.idle_grace_us) != 0)
				return -1;
			break;
		case 't':
			if (hl_parse_u32("hitless-dp", "--retry-us", optarg, 0, 1000000, &dp.retry_us) != 0)
				return -1;
			break;
		default:
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hitless-dp: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (dp.gen_id[0] == '\0' || dp.run_dir[0] == '\0') {
		fprintf(stderr, "hitless-dp: --gen-id and --run-dir are required\n");
		return -1;
	}
	if (dp.fwd_path[0] == '\0')
		default_fwd_path(dp.fwd_path, sizeof(dp.fwd_path));
	return 0;
}
