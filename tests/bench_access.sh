#!/usr/bin/env bash
# Access figures (release build), each beside a baseline in the same run, medians:
#  - a policy decision with 1,000 policies loaded, beside the 2-policy default set;
#  - an approval with a security-key step-up (webauthn-rs's software token) until the
#    requester's live stream carries the decision, beside the same approval without step-up.
# Usage: bash tests/bench_access.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-40}"
cargo run --release -q -p portcullis-policy --example decision_bench -- 1000 5000
BENCH_ROUNDS="$rounds" cargo test --release -q -p portcullis-server --test api -- --ignored --nocapture \
  bench_approval_to_requester_live_stream 2>&1 | grep -E '^(approval|ratio)'
