#!/usr/bin/env bash
# The command-line tour (the README's run command opens the desktop app instead): a guided run
# of the whole Portcullis loop on this machine, on the embedded default (SQLite,
# loopback HTTP): a server with its embedded gateway, an admin, a requester (alice) and an
# approver/auditor (bob), and a throwaway OpenSSH server as the target. Everything lives in a
# temporary folder and is removed at the end. On a terminal, it ends with an interactive shell.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
. tests/build.sh
echo "Building portcullis (the first build takes several minutes; tests/run.sh reuses it)..." >&2
build_ui
build_binaries -q
P="$PWD/target/debug/portcullis"

. tests/lib.sh
# Scripts pass the passphrase in the environment; people get a prompt or the OS keyring.
export PORTCULLIS_KEY_STORE=passphrase PORTCULLIS_PASSPHRASE="demo-only passphrase"

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
as() { local who=$1; shift; printf '\033[2m%s$\033[0m portcullis %s\n' "$who" "$*"; PORTCULLIS_HOME="$work/$who" "$P" "$@"; }

bold "1. A target: a throwaway OpenSSH server on loopback"
start_sshd INFO
echo "sshd on 127.0.0.1:$ssh_port; its login key is the credential Portcullis will keep."

bold "2. The server: init prints the first admin's one-time enrolment code"
as admin server init --data "$work/server" | tee "$work/init.out"
api_port=$(free_port)
gateway_port=$(free_port)
"$P" server run --data "$work/server" --listen "127.0.0.1:$api_port" --gateway-listen "127.0.0.1:$gateway_port" \
  >"$work/server.log" 2>&1 & pids+=($!)
wait_port "$api_port"
wait_port "$gateway_port"
url="http://127.0.0.1:$api_port"
echo "server running at $url; its gateway (where sessions run and are recorded) at 127.0.0.1:$gateway_port"

bold "3. Enrol the admin's device, add users, enrol theirs"
as admin enroll --server "$url" --code "$(tail -n1 "$work/init.out")"
alice_code=$(as admin user add alice --role requester | tee /dev/stderr | tail -n1)
bob_code=$(as admin user add bob --role approver --role auditor | tee /dev/stderr | tail -n1)
as alice enroll --server "$url" --code "$alice_code"
as bob enroll --server "$url" --code "$bob_code"

bold "4. The admin adds the target with its credential (sealed to the server, never shown again)"
as admin target add demo --host 127.0.0.1 --port "$ssh_port" --login "$(id -un)" \
  --key-file "$work/sshd/credential" --host-key "$(cat "$work/sshd/host_key.pub")"
as alice target list

bold "5. alice asks for access; she cannot connect yet, and cannot approve herself"
request=$(as alice request demo --duration 15m --reason "demo: check disk usage" | tee /dev/stderr | tail -n1)
as alice ssh demo -- df -h / || true
as alice approve "$request" || true

bold "6. bob sees the request and approves it"
as bob requests --pending
as bob approve "$request"

bold "7. alice runs commands through the gateway (which holds the credential); the exit status passes through"
as alice ssh demo -- 'echo "hello from $(hostname) as $(id -un)"; df -h / | tail -n1'
as alice ssh demo -- 'exit 3' || echo "(exit status $?)"

bold "8. Or with her own OpenSSH tools: a config with a short-lived certificate for each grant"
config=$(as alice ssh-config --out "$work/alice-ssh-config" | tail -n1)
printf '\033[2malice$\033[0m ssh -F %s demo.portcullis uptime\n' "$config"
ssh -F "$config" demo.portcullis uptime
echo "a file" >"$work/note.txt"
printf '\033[2malice$\033[0m scp -F %s note.txt demo.portcullis:/tmp/portcullis-demo-note.txt\n' "$config"
scp -q -F "$config" "$work/note.txt" demo.portcullis:/tmp/portcullis-demo-note.txt

if [ -t 0 ] && [ -t 1 ]; then
  bold "9. An interactive shell through the gateway (recorded). Type commands, then 'exit' to continue."
  as alice ssh demo || true
fi

bold "10. Every session was recorded by the gateway, encrypted in its own database, and synced to the server"
sleep 2
as alice sessions
as bob audit list
scp_session=$(PORTCULLIS_HOME="$work/bob" "$P" audit list | awk '/subsystem:sftp/ {print $1; exit}')
as bob audit show "$scp_session"
session=$(PORTCULLIS_HOME="$work/bob" "$P" audit list | awk '/hello from/ {print $1; exit}')
as bob audit export "$session" --out "$work/session.cast"
echo "--- $work/session.cast (asciicast v2; play it with asciinema or asciinema-player) ---"
head -n 5 "$work/session.cast"

bold "11. The security events the server recorded"
as bob audit events

bold "Done. The credential was never printed, logged or stored in plaintext; all of this is removed now."
