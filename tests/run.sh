#!/usr/bin/env bash
# The whole test suite: unit tests, the server API over HTTP, the architecture check, and the
# end-to-end scenarios on real sshd targets and the real server process. Runs inside a private
# D-Bus session with an unlocked gnome-keyring so the OS-keyring path is tested for real.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export XDG_RUNTIME_DIR="$scratch/run" XDG_DATA_HOME="$scratch/data" XDG_CONFIG_HOME="$scratch/config" XDG_CACHE_HOME="$scratch/cache"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

exec dbus-run-session -- sh -c '
  echo "throwaway-keyring-password" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
  exec cargo test --workspace --locked "$@"' sh "$@"
