#!/usr/bin/env bash
# Audit figures (release build), medians, each beside its baseline in the same run:
#  - append at the gateway (encrypt + leaf + Merkle frontier + signed checkpoint + insert, one
#    durable transaction per batch of 64) beside a raw SQLite batched insert of the same blobs;
#  - server ingest with full verification on one core (records/s);
#  - `server verify --data` over a million records (seconds).
# Usage: bash tests/bench_audit.sh [RECORDS_PER_ROUND] [ROUNDS] [VERIFY_RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p portcullis-embedded --features bench --example audit_bench
# One core: the whole process (the async runtime and SQLite's worker thread) pinned to CPU 0.
taskset -c 0 target/release/examples/audit_bench  "${1:-20000}" "${2:-5}" "${3:-1000000}"
