#!/usr/bin/env bash
# Install what a fresh Debian 12 machine lacks to build, test and demo Hitless. Idempotent and
# quick when everything is already there: it only calls apt-get/npm when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(dpdk dpdk-dev libdpdk-dev libjansson-dev meson ninja-build pkg-config gcc make
          iproute2 procps python3 socat clang libclang-rt-14-dev openssh-server openssh-client)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install Debian packages: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm: the Electron binary cannot be downloaded here (its postinstall fetches from outside the
# registry); the renderer is tested in Chromium. Only skip the download where it would fail.
export ELECTRON_SKIP_BINARY_DOWNLOAD=${ELECTRON_SKIP_BINARY_DOWNLOAD:-1}
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
# npm 11 may hold back install scripts: check that what we run actually arrived.
for bin in tsc tsx; do
  [ -x "node_modules/.bin/$bin" ] || { echo "setup: node_modules/.bin/$bin missing after npm ci" >&2; exit 1; }
done
