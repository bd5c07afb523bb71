#!/usr/bin/env bash
# Vault figures (release build), in one run: the import of 10,000 secrets (seconds), list and
# search over BENCH_SECRETS (100,000) on SQLite (p50/p99 over HTTP), and the masker's
# throughput against copying the same bytes (crates/vault/examples/mask_bench.rs).
# Usage: bash tests/bench_vault.sh [SECRETS] [QUERIES]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p portcullis-vault --example mask_bench
BENCH_SECRETS="${1:-100000}" BENCH_QUERIES="${2:-400}" cargo test --release -q -p portcullis-server --test api -- \
  --ignored --nocapture bench_secret_search_and_import 2>&1 | grep -E '^vault'
