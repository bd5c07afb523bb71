#!/usr/bin/env bash
# Load figures (release build), in one run: BENCH_DEVICES devices (200), each with a live stream
# and BENCH_CALLS signed calls (20), all at once against one server on loopback — on SQLite, on
# PostgreSQL (a throwaway cluster), and on PostgreSQL with two replicas — p50/p99 latency; then
# approval at one replica -> the requester's live event at the other (median, p99).
# Usage: bash tests/bench_load.sh [DEVICES] [CALLS]
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DEVICES="${1:-200}" BENCH_CALLS="${2:-20}" cargo test --release -q -p portcullis-server --test api -- \
  --ignored --nocapture bench_load_devices_and_live_streams 2>&1 | grep -E '^(load|approval)'
