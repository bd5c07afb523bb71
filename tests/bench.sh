#!/usr/bin/env bash
# Benchmarks (figures, not pass/fail), release build, medians of alternating runs:
#  (a) bulk throughput of SIZE through `portcullis ssh target -- cat > /dev/null` against
#      direct OpenSSH `ssh` to the same sshd with the same cipher, as a ratio;
#  (b) Argon2id unlock time at the chosen parameters, beside an OS-keyring unlock.
# Usage: bash tests/bench.sh [SIZE_MIB=256] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
size_mib=${1:-256}
runs=${2:-5}
cipher="aes256-gcm@openssh.com"
cargo build --release --locked -q -p portcullis-cli -p portcullis-keystore --bins --examples
P="$PWD/target/release/portcullis"

. tests/lib.sh
export PORTCULLIS_KEY_STORE=passphrase PORTCULLIS_PASSPHRASE="bench passphrase"
as() { local who=$1; shift; PORTCULLIS_HOME="$work/$who" "$P" "$@"; }

start_sshd DEBUG

as admin server init --data "$work/server" >"$work/init.out"
api_port=$(free_port)
gateway_port=$(free_port)
"$P" server run --data "$work/server" --listen "127.0.0.1:$api_port" --gateway-listen "127.0.0.1:$gateway_port" \
  >"$work/server.log" 2>&1 & pids+=($!)
wait_port "$api_port"
wait_port "$gateway_port"
url="http://127.0.0.1:$api_port"
as admin enroll --server "$url" --code "$(tail -n1 "$work/init.out")" >/dev/null
as alice enroll --server "$url" --code "$(as admin user add alice --role requester | tail -n1)" >/dev/null
as bob enroll --server "$url" --code "$(as admin user add bob --role approver | tail -n1)" >/dev/null
as admin target add bench --host 127.0.0.1 --port "$ssh_port" --login "$(id -un)" \
  --key-file "$work/sshd/credential" --host-key "$(cat "$work/sshd/host_key.pub")" >/dev/null
as bob approve "$(as alice request bench --duration 8h --reason bench | tail -n1)" >/dev/null

now() { date +%s.%N; }
direct() {
  head -c "${size_mib}M" /dev/zero | ssh -q -c "$cipher" -i "$work/sshd/credential" -p "$ssh_port" \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
    "$(id -un)@127.0.0.1" 'cat > /dev/null' 2>/dev/null
}
brokered() { head -c "${size_mib}M" /dev/zero | as alice ssh bench -- 'cat > /dev/null' 2>/dev/null; }

declare -a t_direct t_brokered
direct; brokered # warm-up
for i in $(seq "$runs"); do
  s=$(now); direct; e=$(now); t_direct+=("$(echo "$e - $s" | bc -l)")
  s=$(now); brokered; e=$(now); t_brokered+=("$(echo "$e - $s" | bc -l)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
md=$(median "${t_direct[@]}")
mb=$(median "${t_brokered[@]}")
echo "ciphers negotiated by sshd: $(grep -o 'cipher: [a-z0-9@.-]*' "$work/sshd/log" | sort | uniq -c | tr '\n' ';')"
printf 'throughput, %s MiB, %s runs each (median):\n' "$size_mib" "$runs"
printf '  direct ssh      %6.2f s  %7.1f MiB/s   runs: %s\n' "$md" "$(echo "$size_mib / $md" | bc -l)" "${t_direct[*]}"
printf '  portcullis ssh  %6.2f s  %7.1f MiB/s   runs: %s\n' "$mb" "$(echo "$size_mib / $mb" | bc -l)" "${t_brokered[*]}"
printf '  brokered/direct throughput ratio: %.2f\n' "$(echo "$md / $mb" | bc -l)"

# Fixed per-command cost of the brokered path (unlock + credential release + handshake).
s=$(now); as alice ssh bench -- true 2>/dev/null; e=$(now)
printf '  one brokered `true` (startup, unlock, release, handshake): %.2f s\n' "$(echo "$e - $s" | bc -l)"

echo
if command -v dbus-run-session >/dev/null && command -v gnome-keyring-daemon >/dev/null; then
  export XDG_RUNTIME_DIR="$work/xdg" XDG_DATA_HOME="$work/xdg-data"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
  dbus-run-session -- sh -c 'echo pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null; exec "$0"' \
    "$PWD/target/release/examples/unlock_bench"
else
  "$PWD/target/release/examples/unlock_bench"
fi
