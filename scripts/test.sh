#!/usr/bin/env bash
# Runs Strata's whole test suite: installs what the tests need (idempotently), then
# formats-checks and runs every test with cargo-nextest. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build outside the clone so fresh clones (CI) reuse earlier builds of the same machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR"

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== building"
cargo build --locked --workspace --all-targets

echo "== tests"
cargo nextest run --locked --workspace --no-fail-fast "$@"
