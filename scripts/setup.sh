#!/usr/bin/env bash
# Install what a fresh Debian 12 machine lacks to build, test and demo Hitless. Idempotent and
# quick when everything is already there: it only calls apt-get/npm when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(dpdk dpdk-dev libdpdk-dev libjansson-dev meson ninja-build pkg-config gcc make
          iproute2 procps python3 socat clang libclang-rt-14-dev openssh-server openssh-client
          chromium fonts-dejavu-core qemu-system-x86 busybox-static cpio
          openvswitch-switch-dpdk lintian sudo systemd libsystemd-dev systemd-container)
# lintian, sudo, systemd: make test checks the host package (lintian, visudo, systemd-analyze
# verify of its units; systemd need not be PID 1); libsystemd-dev: the keeper's sd_notify;
# systemd-container: a host where systemd is PID 1 (systemd-nspawn), for the keeper's unit
# openvswitch-switch-dpdk: stock OVS 3.1 on DPDK 22.11, as a datapath generation behind the
# keeper (DESIGN §12) and as bench/run peers' peer; its system service is not used

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

# The lab's QEMU guests boot Debian's cloud kernel (its virtio modules go into the guest's
# initramfs, built by lab/src/guest.ts): unpacked from the package, not installed on this host.
GUEST_CACHE=/var/cache/hitless-guest
if [ ! -f "$GUEST_CACHE/vmlinuz" ]; then
  kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
  [ -n "$kpkg" ] || { echo "setup: no linux-image-cloud-amd64 in the package index" >&2; exit 1; }
  echo "setup: unpacking $kpkg into $GUEST_CACHE"
  tmp=$(mktemp -d /var/tmp/hl-kernel-XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -qq "$kpkg" 2>/dev/null && dpkg -x ./*.deb root)
  kver=$(ls "$tmp/root/lib/modules")
  mkdir -p "$GUEST_CACHE.new/modules"
  for m in virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
    f=$(find "$tmp/root/lib/modules/$kver" -name "$m.ko*" | head -1)
    [ -n "$f" ] || { echo "setup: $kpkg has no module $m" >&2; exit 1; }
    cp "$f" "$GUEST_CACHE.new/modules/"
  done
  cp "$tmp/root/boot/vmlinuz-$kver" "$GUEST_CACHE.new/vmlinuz"
  echo "$kver" > "$GUEST_CACHE.new/version"
  rm -rf "$GUEST_CACHE" && mv "$GUEST_CACHE.new" "$GUEST_CACHE"
  rm -rf "$tmp"; trap - EXIT
fi

# npm: the Electron binary comes from GitHub, not the npm registry. Where GitHub cannot be
# reached (these lab machines) its download is skipped and the renderer is tested in Chromium
# (browser mode); where it can, Electron installs normally and its e2e test runs too.
if [ -z "${ELECTRON_SKIP_BINARY_DOWNLOAD+x}" ]; then
  # (electron's installer skips on any non-empty value, so reachable means: leave it unset)
  node -e "fetch('https://github.com', {method: 'HEAD', signal: AbortSignal.timeout(3000)}).then(() => process.exit(0), () => process.exit(1))" 2>/dev/null ||
    export ELECTRON_SKIP_BINARY_DOWNLOAD=1
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
# npm 11 may hold back install scripts: check that what we run actually arrived.
for bin in tsc tsx esbuild playwright; do
  [ -x "node_modules/.bin/$bin" ] || { echo "setup: node_modules/.bin/$bin missing after npm ci" >&2; exit 1; }
done
