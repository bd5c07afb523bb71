#!/usr/bin/env bash
# The whole test suite (built as tests/build.sh says, with the test-only features that release
# builds leave out):
# unit tests, the server API over HTTP, the architecture check, the
# end-to-end scenarios on real sshd targets and the real server process, and the GUI tests on
# the real desktop binary through WebKitWebDriver. Runs inside a private D-Bus session with an
# unlocked gnome-keyring (so the OS-keyring path is real) and a private X server (Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
. tests/build.sh
build_ui check

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export XDG_RUNTIME_DIR="$scratch/run" XDG_DATA_HOME="$scratch/data" XDG_CONFIG_HOME="$scratch/config" XDG_CACHE_HOME="$scratch/cache"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

export FEATURES
status=0
dbus-run-session -- sh -c '
  echo "throwaway-keyring-password" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
  exec xvfb-run -a -s "-screen 0 1280x800x24" cargo test --workspace --locked --no-fail-fast --features "$FEATURES" "$@"' sh "$@" ||
  status=$?
# One build serves both README commands: after the suite, the demo's build has nothing to compile.
if [ $# -eq 0 ]; then
  rebuilt=$(build_binaries 2>&1 | grep -E '^ +Compiling' || true)
  if [ -n "$rebuilt" ]; then
    printf 'tests/run.sh: the demo would compile these again (what changed since the suite built them?):\n%s\n' "$rebuilt" >&2
    status=1
  fi
fi
exit $status
