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

# Real programs the end-to-end tests drive, from Debian's packages: psql (PostgreSQL
# client), Prometheus' node_exporter (scraped) and the Prometheus server (remote_write).
PACKAGES=()
command -v psql >/dev/null 2>&1 || PACKAGES+=(postgresql-client)
command -v prometheus-node-exporter >/dev/null 2>&1 || PACKAGES+=(prometheus-node-exporter)
command -v prometheus >/dev/null 2>&1 || PACKAGES+=(prometheus)
if [ ${#PACKAGES[@]} -gt 0 ]; then
  echo "== installing ${PACKAGES[*]} (Debian packages)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
fi

# A real Kafka-protocol broker for the Kafka tests (tansu, built once, cached).
./scripts/kafka.sh install
export STRATA_TANSU="$(./scripts/kafka.sh path)"

# A real S3-API server for the cold tier's tests (s3s-fs, built once, cached).
./scripts/s3.sh install
export STRATA_S3S="$(./scripts/s3.sh path)"

# Real client libraries the end-to-end tests drive (ADBC Flight SQL, influxdb3-python,
# psycopg), in a virtualenv outside the clone, reinstalled when the pins change.
VENV="${STRATA_VENV:-$HOME/.cache/strata/venv}"
REQUIREMENTS=tests/python/requirements.txt
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQUIREMENTS" "$VENV/.strata-requirements"; then
  echo "== installing Python test clients into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$VENV/.strata-requirements"
fi
export STRATA_PYTHON="$VENV/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== building"
cargo build --locked --workspace --all-targets

echo "== tests"
cargo nextest run --locked --workspace --no-fail-fast "$@"
