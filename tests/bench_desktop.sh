#!/usr/bin/env bash
# Desktop figures: start to first paint, idle memory, memory with 1,000 targets, and with
# BENCH_ONLY=secrets the vault at scale: 10 vs 100,000 secrets listed (see
# tests/bench_desktop.py). Usage: bash tests/bench_desktop.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
cargo build --release --locked -q -p portcullis-desktop
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export XDG_RUNTIME_DIR="$scratch/run" XDG_DATA_HOME="$scratch/data" XDG_CONFIG_HOME="$scratch/config" XDG_CACHE_HOME="$scratch/cache"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
dbus-run-session -- sh -c '
  echo "throwaway-keyring-password" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
  exec xvfb-run -a -s "-screen 0 1280x800x24" python3 tests/bench_desktop.py "$@"' sh "$PWD/target/release/portcullis-desktop" "${1:-5}"
