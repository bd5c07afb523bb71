#!/usr/bin/env bash
# The whole test suite (built with the software security key, which release builds leave out):
# unit tests, the server API over HTTP, the architecture check, the
# end-to-end scenarios on real sshd targets and the real server process, and the GUI tests on
# the real desktop binary through WebKitWebDriver. Runs inside a private D-Bus session with an
# unlocked gnome-keyring (so the OS-keyring path is real) and a private X server (Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
# The desktop shell embeds the built UI.
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check && npm run --silent build)

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export XDG_RUNTIME_DIR="$scratch/run" XDG_DATA_HOME="$scratch/data" XDG_CONFIG_HOME="$scratch/config" XDG_CACHE_HOME="$scratch/cache"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

exec dbus-run-session -- sh -c '
  echo "throwaway-keyring-password" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
  exec xvfb-run -a -s "-screen 0 1280x800x24" cargo test --workspace --locked --features portcullis-cli/soft-authenticator,portcullis-cli/soak,portcullis-desktop/soft-authenticator "$@"' sh "$@"
