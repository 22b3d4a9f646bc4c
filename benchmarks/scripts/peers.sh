#!/usr/bin/env bash
# Installs the peers of `strata-benchmarks tsbs`, idempotently:
#   - DuckDB and chDB (PyPI, pinned in benchmarks/peers/requirements.txt) with the ADBC
#     Flight SQL client, in a virtualenv outside the clone (reinstalled when the pins change);
#   - InfluxDB 1.x from Debian's `influxdb` package (its service is not started: the
#     harness runs its own influxd on free loopback ports).
#
#   peers.sh [install]   install what is missing
#   peers.sh python      install, then print the virtualenv's python
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${STRATA_BENCH_VENV:-$HOME/.cache/strata/bench-venv}"
REQUIREMENTS=peers/requirements.txt

install() {
  if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQUIREMENTS" "$VENV/.strata-requirements"; then
    echo "== installing the benchmark peers (DuckDB, chDB, ADBC) into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    cp "$REQUIREMENTS" "$VENV/.strata-requirements"
  fi
  if ! command -v influxd >/dev/null 2>&1 && [ ! -x /usr/bin/influxd ]; then
    echo "== installing InfluxDB 1.x (Debian's influxdb)" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq influxdb >&2
  fi
}

case "${1:-install}" in
  install) install ;;
  python) install; echo "$VENV/bin/python" ;;
  *) echo "usage: $0 [install|python]" >&2; exit 2 ;;
esac
