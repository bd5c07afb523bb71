#!/usr/bin/env bash
# Gateway benchmarks (figures, not pass/fail), release build, medians of alternating runs, each
# figure beside its baseline measured in the same run. A gateway process (`gateway run`, so its
# CPU and memory are its own) in front of a throwaway OpenSSH server; the user's own `ssh`/`scp`.
#  (a) SIZE through `ssh ... 'cat > /dev/null'` via the gateway vs direct to the same sshd with
#      the same cipher: wall clock and throughput ratio; CPU seconds per GiB of the gateway
#      (user + system) beside sshd's in the same runs;
#  (b) SIZE with `scp` (SFTP mode) via the gateway vs direct;
#  (c) interactive round trip: one byte echoed by `cat` on a PTY, via the gateway vs direct;
#  (d) the gateway's memory with 50 idle sessions open;
#  (e) Argon2id unlock beside an OS-keyring unlock (issue 2's figure, kept);
#  (f) bounded buffers: the gateway's peak memory while SIZE is pushed into a target that does
#      not read for 3 s, and during a 2 GiB scp (which must not stall).
# Both legs use aes256-gcm: the user side by `-c`, the gateway prefers it towards targets.
# Usage: bash tests/bench.sh [SIZE_MIB=256] [RUNS=5]   (BENCH_PARTS="a b c d e" picks parts)
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

start_sshd INFO
sshd_pid=${pids[-1]}

as admin server init --data "$work/server" >"$work/init.out"
api_port=$(free_port)
# Exec stdin is recorded in full up to the cap and a session past it is ended: the cap here
# allows the payload, so (a) measures full recording of all of it.
"$P" server run --data "$work/server" --listen "127.0.0.1:$api_port" --no-gateway \
  --exec-record-limit $(( (size_mib + 1) * 1024 * 1024 )) >"$work/server.log" 2>&1 & pids+=($!)
server_pid=$!
wait_port "$api_port"
url="http://127.0.0.1:$api_port"
as admin enroll --server "$url" --code "$(tail -n1 "$work/init.out")" >/dev/null
gateway_code=$(as admin gateway add bench-gw | tail -n1)
as gw gateway enroll --server "$url" --code "$gateway_code" >/dev/null
# A new gateway serves nothing until a second admin confirms it.
as admin2 enroll --server "$url" --code "$(as admin user add admin2 --role admin | tail -n1)" >/dev/null
as admin2 gateway confirm bench-gw >/dev/null
gateway_port=$(free_port)
PORTCULLIS_HOME="$work/gw" "$P" gateway run --listen "127.0.0.1:$gateway_port" >"$work/gateway.log" 2>&1 & pids+=($!)
gateway_pid=$!
wait_port "$gateway_port"
as alice enroll --server "$url" --code "$(as admin user add alice --role requester | tail -n1)" >/dev/null
as bob enroll --server "$url" --code "$(as admin user add bob --role approver | tail -n1)" >/dev/null
as admin target add bench --host 127.0.0.1 --port "$ssh_port" --login "$(id -un)" --gateway bench-gw \
  --key-file "$work/sshd/credential" --host-key "$(cat "$work/sshd/host_key.pub")" >/dev/null
as bob approve "$(as alice request bench --duration 8h --reason bench | tail -n1)" >/dev/null
for _ in $(seq 50); do as alice ssh-config --out "$work/ssh-config" >/dev/null 2>&1 && break; sleep 0.2; done
cfg="$work/ssh-config"

direct_opts=(-q -c "$cipher" -i "$work/sshd/credential" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o BatchMode=yes -o IdentitiesOnly=yes)
direct_ssh() { ssh "${direct_opts[@]}" -p "$ssh_port" "$(id -un)@127.0.0.1" "$@"; }
gateway_ssh() { ssh -q -c "$cipher" -F "$cfg" bench.portcullis "$@"; }
payload="$work/payload.bin"
head -c "${size_mib}M" /dev/urandom >"$payload"

now() { date +%s.%N; }
# utime + stime (+ reaped children's, for sshd's per-connection processes), in seconds.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15 + $16 + $17) / hz}' "/proc/$1/stat"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
sub() { echo "$1 - $2" | bc -l; }

parts=${BENCH_PARTS:-a b c d f e}
part() { [[ " $parts " == *" $1 "* ]]; }
declare -a t_direct t_gateway c_gateway c_server c_sshd_gw c_sshd_direct s_direct s_gateway
if part a; then
run_direct() { direct_ssh 'cat > /dev/null' <"$payload"; }
run_gateway() { gateway_ssh 'cat > /dev/null' <"$payload"; }
run_direct; run_gateway # warm-up
for _ in $(seq "$runs"); do
  c0=$(cpu "$sshd_pid"); s=$(now); run_direct; e=$(now); sleep 0.3; c1=$(cpu "$sshd_pid")
  t_direct+=("$(sub "$e" "$s")"); c_sshd_direct+=("$(sub "$c1" "$c0")")
  # CPU is counted until the server is idle again: the gateway has uploaded the session's
  # records and the server stored them (the whole cost of recording, not only the transfer's).
  g0=$(cpu "$gateway_pid"); v0=$(cpu "$server_pid"); c0=$(cpu "$sshd_pid"); s=$(now); run_gateway; e=$(now)
  v1=$(cpu "$server_pid")
  for _ in $(seq 100); do sleep 0.5; v2=$(cpu "$server_pid"); [ "$(echo "$v2 - $v1 < 0.02" | bc -l)" = 1 ] && break; v1=$v2; done
  g1=$(cpu "$gateway_pid"); c1=$(cpu "$sshd_pid")
  t_gateway+=("$(sub "$e" "$s")"); c_gateway+=("$(sub "$g1" "$g0")"); c_sshd_gw+=("$(sub "$c1" "$c0")")
  c_server+=("$(sub "$v1" "$v0")")
done
gib=$(echo "$size_mib / 1024" | bc -l)
md=$(median "${t_direct[@]}"); mg=$(median "${t_gateway[@]}")
cg=$(median "${c_gateway[@]}"); cv=$(median "${c_server[@]}"); csg=$(median "${c_sshd_gw[@]}"); csd=$(median "${c_sshd_direct[@]}")
printf '(a) %s MiB through ssh "cat > /dev/null", %s runs each, medians:\n' "$size_mib" "$runs"
printf '    direct          %6.2f s  %7.1f MiB/s   runs: %s\n' "$md" "$(echo "$size_mib / $md" | bc -l)" "${t_direct[*]}"
printf '    via gateway     %6.2f s  %7.1f MiB/s   runs: %s\n' "$mg" "$(echo "$size_mib / $mg" | bc -l)" "${t_gateway[*]}"
printf '    gateway/direct throughput ratio: %.2f (goal >= 0.55)\n' "$(echo "$md / $mg" | bc -l)"
printf '    CPU per GiB: gateway %.2f s, sshd %.2f s in the same runs (%.2f s direct): gateway/sshd = %.2f (goal <= 2.5)\n' \
  "$(echo "$cg / $gib" | bc -l)" "$(echo "$csg / $gib" | bc -l)" "$(echo "$csd / $gib" | bc -l)" "$(echo "$cg / $csg" | bc -l)"
printf '    the control server ingesting those records: %.2f s CPU per GiB\n' "$(echo "$cv / $gib" | bc -l)"
fi

scp_direct() { scp "${direct_opts[@]}" -P "$ssh_port" "$payload" "$(id -un)@127.0.0.1:/dev/null" 2>/dev/null; }
scp_gateway() { scp -q -c "$cipher" -F "$cfg" "$payload" bench.portcullis:/dev/null 2>/dev/null; }
# (sftp-server answers scp's closing fsetstat on /dev/null with an error on either path; the
# bytes have been sent by then.)
if part b; then
scp_direct; scp_gateway
for _ in $(seq "$runs"); do
  s=$(now); scp_direct; e=$(now); s_direct+=("$(sub "$e" "$s")")
  s=$(now); scp_gateway; e=$(now); s_gateway+=("$(sub "$e" "$s")")
done
sd=$(median "${s_direct[@]}"); sg=$(median "${s_gateway[@]}")
printf '(b) %s MiB with scp (SFTP mode), medians: direct %.2f s, via gateway %.2f s: ratio %.2f (goal >= 0.45)\n' \
  "$size_mib" "$sd" "$sg" "$(echo "$sd / $sg" | bc -l)"
fi

if part c; then
printf '(c) interactive round trip, one byte echoed by cat on a PTY (200 each, alternating blocks):\n'
python3 tests/bench_rtt.py 200 \
  "direct" "ssh ${direct_opts[*]} -tt -p $ssh_port $(id -un)@127.0.0.1 stty raw -echo\\; cat" \
  "gateway" "ssh -q -tt -c $cipher -F $cfg bench.portcullis stty raw -echo\\; cat"
fi

if part d; then
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
before=$(rss "$gateway_pid")
idle=()
for _ in $(seq 50); do gateway_ssh sleep 600 </dev/null & idle+=($!); sleep 0.1; done
established() { ss -tn state established "( sport = :$gateway_port )" | tail -n +2 | wc -l; }
for _ in $(seq 100); do [ "$(established)" -ge 50 ] && break; sleep 0.2; done
sleep 2
open_now=$(established)
after=$(rss "$gateway_pid")
kill "${idle[@]}" 2>/dev/null || true
wait "${idle[@]}" 2>/dev/null || true
printf '(d) gateway memory (RSS): %.1f MiB idle, %.1f MiB with %s idle sessions open (%.0f KiB per session)\n' \
  "$(echo "$before / 1024" | bc -l)" "$(echo "$after / 1024" | bc -l)" "$open_now" "$(echo "($after - $before) / $open_now" | bc -l)"
fi

if part f; then
# Peak RSS of the gateway while "$@" runs, sampled every 50 ms.
peak_rss() {
  "$@" & local job=$! peak=0 now
  while kill -0 "$job" 2>/dev/null; do
    now=$(rss "$gateway_pid"); [ "$now" -gt "$peak" ] && peak=$now; sleep 0.05
  done
  wait "$job"
  echo "$peak"
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
idle=$(rss "$gateway_pid")
slow=$(peak_rss sh -c "ssh -q -c $cipher -F $cfg bench.portcullis 'sleep 3; cat > /dev/null' < $payload")
big="$work/big.bin"
head -c 2G /dev/zero >"$big"
s=$(now)
big_peak=$(peak_rss sh -c "scp -q -c $cipher -F $cfg $big bench.portcullis:/dev/null 2>/dev/null")
e=$(now)
rm -f "$big"
printf '(f) gateway memory (RSS) at rest %.1f MiB; peak while %s MiB wait on a target that reads after 3 s: %.1f MiB;\n' \
  "$(echo "$idle / 1024" | bc -l)" "$size_mib" "$(echo "$slow / 1024" | bc -l)"
printf '    2 GiB scp through the gateway: %.1f s (%.0f MiB/s), peak %.1f MiB\n' \
  "$(sub "$e" "$s")" "$(echo "2048 / $(sub "$e" "$s")" | bc -l)" "$(echo "$big_peak / 1024" | bc -l)"
fi

part e || exit 0
echo
if command -v dbus-run-session >/dev/null && command -v gnome-keyring-daemon >/dev/null; then
  export XDG_RUNTIME_DIR="$work/xdg" XDG_DATA_HOME="$work/xdg-data"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
  dbus-run-session -- sh -c 'echo pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null; exec "$0"' \
    "$PWD/target/release/examples/unlock_bench"
else
  "$PWD/target/release/examples/unlock_bench"
fi
