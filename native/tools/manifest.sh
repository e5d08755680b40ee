#!/bin/sh
# manifest.sh OUT RELEASE DPDK LAYOUT MODES HEADER CORE_SOURCES...
# Writes a release's manifest (installed as releases/<version>/release.json), which the agent
# reads to choose an upgrade mode. core: a digest of the process core's sources and the DPDK
# version it is built with: two releases with the same core differ only in their forwarding
# stage, so one can replace the other's stage in place (lib/swap).
set -eu
out=$1 release=$2 dpdk=$3 layout=$4 modes=$5 header=$6
shift 6
abi=$(sed -n 's/^#define HITLESS_FWD_ABI \([0-9][0-9]*\).*/\1/p' "$header")
core=$( { echo "dpdk $dpdk"; cat "$header" "$@"; } | sha256sum | cut -c1-16)
list=$(printf '%s' "$modes" | sed 's/[^,][^,]*/"&"/g')
printf '{"release":"%s","kind":"hitless-dp","core":"%s","dpdk":"%s","fwd":{"abi":%s,"layout":%s},"modes":[%s]}\n' \
  "$release" "$core" "$dpdk" "$abi" "$layout" "$list" > "$out"
