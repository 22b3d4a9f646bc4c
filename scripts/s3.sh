#!/usr/bin/env bash
# The real S3-API server Strata's tests use for the cold tier: s3s-fs 0.14.1 from
# crates.io (a bucket is a directory; it checks request signatures), built once and
# cached outside the clone (~2 minutes on two cores).
#
#   scripts/s3.sh install                 install it if missing (idempotent)
#   scripts/s3.sh path                    print where it is installed
#   scripts/s3.sh start PORT DIR KEY SECRET
#                                         serve DIR on 127.0.0.1:PORT, in the foreground
set -euo pipefail

VERSION=0.14.1
TOOLS="${STRATA_TOOLS:-$HOME/.cache/strata/tools}"
S3S="${STRATA_S3S:-$TOOLS/bin/s3s-fs}"

install() {
  if [ -x "$S3S" ] && [ "$(cat "$TOOLS/.s3s-fs-version" 2>/dev/null)" = "$VERSION" ]; then
    return
  fi
  echo "== installing the S3-API server (s3s-fs $VERSION) into $TOOLS (cached for later runs)"
  mkdir -p "$TOOLS"
  # Its own target directory, so it never shares (or invalidates) Strata's build.
  env -u CARGO_TARGET_DIR cargo install --quiet --root "$TOOLS" "s3s-fs@$VERSION" \
    --locked --features binary
  echo "$VERSION" > "$TOOLS/.s3s-fs-version"
}

case "${1:-install}" in
  install) install ;;
  path) echo "$S3S" ;;
  start)
    install
    exec "$S3S" --host 127.0.0.1 --port "$2" --access-key "$4" --secret-key "$5" "$3"
    ;;
  *) echo "usage: $0 [install|path|start PORT DIR KEY SECRET]" >&2; exit 2 ;;
esac
