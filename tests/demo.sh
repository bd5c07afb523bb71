#!/usr/bin/env bash
# The desktop app, standalone, ready to try: two windows on one embedded server and a throwaway
# OpenSSH server on loopback as the target "demo".
#   * ada   — admin, approver and auditor; the server runs inside her app (SQLite in its data dir)
#   * rob   — requester, enrolled against ada's server
# In rob's window: My requests → ask for "demo"; in ada's: Approvals → Approve; in rob's: Connect.
# Close both windows to finish; everything lives in a temporary folder and is removed then.
# (tests/demo_cli.sh is the same loop through the command line.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
. tests/build.sh
echo "Building the desktop app (the first build takes several minutes; tests/run.sh reuses it)..." >&2
build_ui
build_binaries -q
APP="$PWD/target/debug/portcullis-desktop"

. tests/lib.sh
start_sshd INFO
# Used only where no OS keyring is reachable (then unlocking later asks for it).
passphrase="demo-only passphrase"
cat >"$work/ada.json" <<JSON
{ "passphrase": "$passphrase",
  "standalone": { "admin": "ada",
    "targets": [{ "name": "demo", "host": "127.0.0.1", "port": $ssh_port, "login": "$(id -un)",
                  "host_key": "$(cat "$work/sshd/host_key.pub")", "key_file": "$work/sshd/credential",
                  "environment": "dev", "tags": ["demo", "loopback"],
                  "description": "A throwaway OpenSSH server started by tests/demo.sh" }],
    "users": [{ "name": "rob", "roles": ["requester"] }],
    "codes_out": "$work/codes.json" } }
JSON
cat >"$work/rob.json" <<JSON
{ "passphrase": "$passphrase", "enrol": { "codes_file": "$work/codes.json", "user": "rob" } }
JSON

run=()
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "No display here: the windows run on a virtual X display (xvfb). Run this on a desktop to see them." >&2
  run=(xvfb-run -a -s "-screen 0 1280x800x24")
fi
"${run[@]}" env PORTCULLIS_APP_DIR="$work/ada" PORTCULLIS_SEED="$work/ada.json" "$APP" 2>"$work/ada.log" & ada=$!
"${run[@]}" env PORTCULLIS_APP_DIR="$work/rob" PORTCULLIS_SEED="$work/rob.json" "$APP" 2>"$work/rob.log" & rob=$!
pids+=("$ada" "$rob")
cat <<TXT

Two Portcullis windows are opening:
  ada (admin, approver, auditor) — runs the server; Vault shows the target "demo"
  rob (requester)                — My requests → target "demo", a duration, a reason → Ask for access
Then approve it in ada's Approvals tab, and press Connect in rob's window.
ada replays the recorded session under Sessions. (If asked: the passphrase is "$passphrase".)
Close both windows (or press Ctrl-C) to finish.
TXT
wait "$ada" "$rob" || true
