#!/usr/bin/env bash
# Installs promtool (built from source through the Go module proxy) into the cache and prints
# its path. Idempotent: a cached build is reused. Used by scripts/check-monitoring.sh to check
# the chart's alerting rules, their unit tests and the dashboard's queries.
set -euo pipefail
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
CACHE="${CTWA_CACHE_DIR:-$HOME/.cache/ctwa-operator}/promtool-$PROMTOOL_VERSION"
BIN="$CACHE/bin/promtool"
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "install-promtool: go is required to build promtool" >&2; exit 1; }
mkdir -p "$CACHE"
# Serialise concurrent first runs (make targets and tests may start together); the loser
# waits and then finds the binary.
exec 8>"$CACHE/.lock"
flock 8
if [ ! -x "$BIN" ]; then
  echo "install-promtool: building promtool $PROMTOOL_VERSION (first run only, takes minutes)" >&2
  # go install writes the binary in place only when the build succeeded, so an interrupted
  # run leaves no half-written promtool behind.
  GOBIN="$CACHE/bin" GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go install "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" >&2
fi
echo "$BIN"
