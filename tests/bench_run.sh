#!/usr/bin/env bash
# `portcullis run` figures (release build), in one run against a throwaway server on loopback:
# start-to-exit of `true` run directly, through `portcullis run` with one secret (a person's
# device: its passphrase is stretched with Argon2id at each start) and through a pipeline's
# PORTCULLIS_IDENTITY (nothing to unlock); then a child writing 1 GiB straight to /dev/null,
# through a plain pipe (`| cat`), and through `portcullis run` (both streams masked). Medians.
# Usage: bash tests/bench_run.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-15}"
cargo build --release -q -p portcullis-cli --bin portcullis
PC="$PWD/target/release/portcullis"
WORK="$(mktemp -d)"
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
export PORTCULLIS_KEY_STORE=passphrase PORTCULLIS_PASSPHRASE=bench-passphrase
pc() { PORTCULLIS_HOME="$WORK/$1" "$PC" "${@:2}"; }
code=$("$PC" server init --data "$WORK/server" | tail -n 1)
PORT=$((20000 + RANDOM % 20000))
"$PC" server run --data "$WORK/server" --listen "127.0.0.1:$PORT" --gateway-listen "127.0.0.1:$((PORT + 1))" \
  >"$WORK/server.log" 2>&1 &
SERVER=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 100); do curl -sf "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
pc admin enroll --server "$URL" --code "$code" >/dev/null
enrol() { pc "$1" enroll --server "$URL" --code "$(pc admin user add "$1" "${@:2}" | tail -n 1)" >/dev/null; }
enrol alice --role requester
enrol bob --role approver
enrol ben --role admin
printf 'bench-token-%s' "$RANDOM$RANDOM$RANDOM" | pc admin secret add token --type api-token --value-stdin >/dev/null
pc admin user add ci --role service >/dev/null
pc ben user confirm ci | tail -n 1 >"$WORK/ci.code"
PORTCULLIS_HOME="$WORK/none" "$PC" enroll --server "$URL" --code-file "$WORK/ci.code" --identity-out "$WORK/ci.id" >/dev/null
pc admin policy show >"$WORK/policy.cedar"
cat >>"$WORK/policy.cedar" <<'CEDAR'
@id("pipelines-use-without-approval")
@approvals("0")
permit (principal, action == Portcullis::Action::"use", resource) when { principal.roles.contains("service") };
CEDAR
pc admin policy set "$WORK/policy.cedar" >/dev/null
id=$(pc alice request token --use --duration 8h --reason bench | tail -n 1)
pc bob approve "$id" >/dev/null
PORTCULLIS_IDENTITY="$(cat "$WORK/ci.id")" "$PC" request token --use --duration 8h --reason bench >/dev/null
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
direct=$(for _ in $(seq "$ROUNDS"); do ms /usr/bin/true; done | median)
person=$(for _ in $(seq "$ROUNDS"); do ms env PORTCULLIS_HOME="$WORK/alice" "$PC" run --secret T=token -- /usr/bin/true; done | median)
pipeline=$(for _ in $(seq "$ROUNDS"); do
  ms env PORTCULLIS_HOME="$WORK/none" PORTCULLIS_IDENTITY="$(cat "$WORK/ci.id")" "$PC" run --secret T=token -- /usr/bin/true
done | median)
echo "run start-to-exit (median of $ROUNDS): direct ${direct} ms, portcullis run as a person ${person} ms, as a pipeline ${pipeline} ms"
LINE='2026-12-02T10:00:00Z INFO request id=12345 status=200 took=12ms path=/api/v1/items user=alice'
GIB=1073741824
child="yes '$LINE' | head -c $GIB"
secs() { local s e; s=$(date +%s%N); "$@"; e=$(date +%s%N); echo "$(((e - s) / 1000000))"; }
straight=$(for _ in 1 2 3; do secs sh -c "$child > /dev/null"; done | median)
piped=$(for _ in 1 2 3; do secs sh -c "$child | cat > /dev/null"; done | median)
masked=$(for _ in 1 2 3; do
  secs sh -c "PORTCULLIS_HOME=$WORK/none PORTCULLIS_IDENTITY=\$(cat $WORK/ci.id) $PC run --secret T=token -- sh -c \"$child\" > /dev/null"
done | median)
gbps() { echo "scale=2; $GIB / ($1 / 1000) / 1000000000" | bc; }
echo "run 1 GiB (median of 3): straight to /dev/null $(gbps "$straight") GB/s, through a pipe $(gbps "$piped") GB/s," \
  "through portcullis run $(gbps "$masked") GB/s ($(echo "scale=2; $straight / $masked" | bc)x straight," \
  "$(echo "scale=2; $piped / $masked" | bc)x the pipe)"
