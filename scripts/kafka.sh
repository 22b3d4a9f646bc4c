#!/usr/bin/env bash
# The real Kafka-protocol broker Strata's tests use: tansu 0.6.0 from crates.io (later
# releases need a newer rustc than 1.95), built once and cached outside the clone; a cold
# build takes ~20 minutes on two cores.
#
#   scripts/kafka.sh install        install it if missing (idempotent)
#   scripts/kafka.sh path           print where it is installed
#   scripts/kafka.sh start [PORT]   run a broker on 127.0.0.1:PORT (default 9092) with
#                                   in-memory storage, in the foreground
set -euo pipefail

VERSION=0.6.0
TOOLS="${STRATA_TOOLS:-$HOME/.cache/strata/tools}"
TANSU="${STRATA_TANSU:-$TOOLS/bin/tansu}"

install() {
  if [ -x "$TANSU" ] && [ "$(cat "$TOOLS/.tansu-version" 2>/dev/null)" = "$VERSION" ]; then
    return
  fi
  echo "== installing the Kafka broker (tansu $VERSION) into $TOOLS (cached for later runs)"
  mkdir -p "$TOOLS"
  # Its own target directory, so it never shares (or invalidates) Strata's build.
  env -u CARGO_TARGET_DIR cargo install --quiet --root "$TOOLS" "tansu@$VERSION" \
    --locked --features dynostore
  echo "$VERSION" > "$TOOLS/.tansu-version"
}

case "${1:-install}" in
  install) install ;;
  path) echo "$TANSU" ;;
  start)
    install
    port="${2:-9092}"
    exec "$TANSU" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine memory://tansu/
    ;;
  *) echo "usage: $0 [install|path|start [PORT]]" >&2; exit 2 ;;
esac
