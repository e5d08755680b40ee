#!/usr/bin/env bash
# Start the console on a fleet file: the Electron desktop app if its binary is installed,
# otherwise browser mode (opened in Chromium when a display is available). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
fleet=${1:?usage: scripts/console.sh FLEET_FILE}
state=${HITLESS_STATE:-/var/tmp/hitless-console}
mkdir -p "$state"
electron=$(node -e "try { const p = require('electron'); if (require('fs').existsSync(p)) console.log(p) } catch {}" 2>/dev/null || true)
if [ -n "$electron" ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; }; then
  echo "console: the desktop app ($electron)"
  exec "$electron" app/dist/electron/main.cjs --fleet "$fleet" --state "$state" --known-hosts "$state/known_hosts"
fi
open=()
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then open=(--open); else
  echo "console: no display here: open the URL below in a browser on this machine (or tunnel it: ssh -L PORT:127.0.0.1:PORT this-host)"
fi
exec app/bin/hitless-console --fleet "$fleet" --state "$state" --known-hosts "$state/known_hosts" --ssh-config /dev/null --port "${HITLESS_PORT:-0}" "${open[@]}"
