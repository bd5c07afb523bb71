# Sourced by run.sh, demo.sh and demo_cli.sh: one build for the suite and the demos, so whichever
# runs second compiles nothing (cargo builds a crate again whenever its features differ). The
# test-only features (a software security key for the GUI and CLI tests, the fault-test writer)
# are in these debug builds; release packages (tests/package.sh) leave them out.
FEATURES=portcullis-cli/soft-authenticator,portcullis-cli/soak,portcullis-desktop/soft-authenticator
# No incremental compilation: the suite's build is a cold one on a fresh clone (CI, a newcomer),
# where incremental state only costs time and gigabytes of target/debug/incremental.
export CARGO_INCREMENTAL=0

# The desktop shell embeds the built UI (tauri's generate_context! needs ui/dist). Built again
# only when its sources changed: a fresh ui/dist would make cargo rebuild the desktop app.
build_ui() {
  local stamp=target/ui-built-from sources
  sources=$(cd ui && find src index.html package.json package-lock.json svelte.config.js tsconfig.json vite.config.ts \
    -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  if [ -d ui/node_modules ] && [ -f ui/dist/index.html ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sources" ]; then
    [ "${1:-}" != check ] || (cd ui && npm run --silent check)
    return
  fi
  (cd ui && npm ci --no-audit --no-fund --loglevel=error && { [ "${1:-}" != check ] || npm run --silent check; } &&
    npm run --silent build)
  mkdir -p target && echo "$sources" >"$stamp"
}

# What the suite builds, tests included, without running them: the binaries (portcullis,
# portcullis-desktop, portcullis-soak) are the ones the tests run. `cargo build` alone would
# resolve other features (dev-dependencies such as the GUI tests' WebDriver client turn on
# features of shared crates) and build many crates twice.
build_binaries() {
  # PORTCULLIS_BUILD_TIMINGS=1 writes cargo's timing report (target/cargo-timings/).
  cargo test --workspace --locked --features "$FEATURES" --no-run ${PORTCULLIS_BUILD_TIMINGS:+--timings} "$@"
}
