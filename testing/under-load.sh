#!/usr/bin/env bash
# Run a command with background load beside it, as a busy CI machine has: a nice'd busy loop
# and a nice'd disk writer (fsync'd 64 MB files, over and over). The load stops when the
# command ends, however it ends; the command's exit status is returned.
#   testing/under-load.sh node --import tsx --test --test-name-pattern="killed mid-switch" agent/src/host/agent.test.ts
set -uo pipefail
scratch=$(mktemp -d /var/tmp/hl-load-XXXXXX)
pids=()
stop() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$scratch"; }
trap stop EXIT INT TERM
nice -n 19 sh -c 'while :; do :; done' & pids+=($!)
nice -n 19 sh -c "while :; do dd if=/dev/zero of=$scratch/w bs=1M count=64 conv=fsync status=none; done" & pids+=($!)
"$@"
