#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A bounded libFuzzer run of fuzz_vu (keeper_core's frame checks and session state).
# Usage: native/fuzz/run.sh [SECONDS]   (default 20; one process, one core)
# Builds when the binary is missing or older than its sources. New inputs go to the scratch
# corpus native/build-fuzz/corpus-work (kept between runs); the committed seeds in
# native/fuzz/corpus/vu are only read. Exits non-zero on a crash and names the crash input;
# replay one with: FUZZ_VU_TRACE=1 native/build-fuzz/fuzz_vu <input>
set -eu
secs=${1:-20}
here=$(cd "$(dirname "$0")" && pwd)
native=$(dirname "$here")
out="$native/build-fuzz"
bin="$out/fuzz_vu"
seeds="$here/corpus/vu"
work="$out/corpus-work"
log="$out/fuzz_vu.log"

case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac

stale=0
[ -x "$bin" ] || stale=1
for src in "$here/fuzz_vu.c" "$native/src/keeper/vu.c" "$native/src/keeper/vu.h" \
	"$native/src/keeper/session.c" "$native/src/keeper/session.h" "$here/build.sh"; do
	if [ "$src" -nt "$bin" ]; then stale=1; fi
done
[ "$stale" = 0 ] || "$here/build.sh"

mkdir -p "$work" "$out/artifacts"
[ -n "$(ls -A "$work")" ] || cp "$seeds"/* "$work"/

set +e
"$bin" -max_total_time="$secs" -timeout=5 -rss_limit_mb=1024 -print_final_stats=1 \
	-artifact_prefix="$out/artifacts/" "$work" "$seeds" >"$log" 2>&1
rc=$?
set -e

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
[ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
last=$(grep -E '^#[0-9]+.*(cov|DONE)' "$log" | tail -n 1 || true)
crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)

if [ "$rc" -ne 0 ] || [ -n "$crash" ]; then
	grep -E 'ERROR|runtime error|invariant failed|fuzz_vu:|SUMMARY|#[0-9]+ in ' "$log" | head -n 40 >&2 || true
	echo "fuzz_vu: crash input: ${crash:-(none written, see $log)}" >&2
	echo "fuzz_vu: full log: $log" >&2
	echo "fuzz_vu: ${runs:-0} runs, 1 crash"
	[ "$rc" -ne 0 ] || rc=1
	exit "$rc"
fi
echo "fuzz_vu: $last"
echo "fuzz_vu: ${runs:-0} runs, 0 crashes"
