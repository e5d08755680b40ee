#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Build the libFuzzer harness for keeper_core (vu.c, session.c) into native/build-fuzz/.
# Needs clang with libFuzzer (Debian: clang, libclang-rt-14-dev). Usage: native/fuzz/build.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
native=$(dirname "$here")
out="$native/build-fuzz"
CC=${CC:-clang}

command -v "$CC" >/dev/null || { echo "build.sh: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
mkdir -p "$out"
"$CC" -std=gnu11 -g -O1 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-I "$native/src/keeper" \
	"$here/fuzz_vu.c" "$native/src/keeper/vu.c" "$native/src/keeper/session.c" \
	-o "$out/fuzz_vu.tmp"
mv "$out/fuzz_vu.tmp" "$out/fuzz_vu"
echo "built $out/fuzz_vu"
