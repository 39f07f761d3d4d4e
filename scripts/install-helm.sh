#!/usr/bin/env bash
# Installs helm (built from source through the Go module proxy) into the cache and prints its
# path. Idempotent: a cached build is reused.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.19.2}"
CACHE="${CTWA_CACHE_DIR:-$HOME/.cache/ctwa-operator}/helm-$HELM_VERSION"
BIN="$CACHE/bin/helm"
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "install-helm: go is required to build helm" >&2; exit 1; }
mkdir -p "$CACHE"
# Serialise concurrent first runs (tests may start together).
exec 8>"$CACHE/.lock"
flock 8
if [ ! -x "$BIN" ]; then
  echo "install-helm: building helm $HELM_VERSION (first run only)" >&2
  GOBIN="$CACHE/bin" GOFLAGS=-mod=mod CGO_ENABLED=0 go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
fi
echo "$BIN"
