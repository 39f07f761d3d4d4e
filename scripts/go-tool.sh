#!/usr/bin/env bash
# Builds a Go tool the checks need from source through the Go module proxy, once, into the
# cache (${CTWA_CACHE_DIR:-~/.cache/ctwa-operator}/<tool>-<version>/bin), and prints its path.
#
#   scripts/go-tool.sh helm | promtool | actionlint
#
# The versions are pinned here; <TOOL>_VERSION in the environment overrides one (e.g.
# HELM_VERSION=v3.19.5). Idempotent and safe to run concurrently: the first run builds under
# a lock, the others wait and reuse the binary. `go install` writes the binary only when the
# build succeeded, so an interrupted run leaves nothing half-written.
set -euo pipefail
tool="${1:?usage: scripts/go-tool.sh helm|promtool|actionlint}"
case "$tool" in
  helm)       package=helm.sh/helm/v3/cmd/helm;                 version="${HELM_VERSION:-v3.19.2}" ;;
  promtool)   package=github.com/prometheus/prometheus/cmd/promtool; version="${PROMTOOL_VERSION:-v0.316.0}" ;;
  actionlint) package=github.com/rhysd/actionlint/cmd/actionlint; version="${ACTIONLINT_VERSION:-v1.7.12}" ;;
  *) echo "go-tool: unknown tool $tool" >&2; exit 2 ;;
esac
cache="${CTWA_CACHE_DIR:-$HOME/.cache/ctwa-operator}/$tool-$version"
bin="$cache/bin/$tool"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "go-tool: go is required to build $tool" >&2; exit 1; }
mkdir -p "$cache"
exec 8>"$cache/.lock"
flock 8
if [ ! -x "$bin" ]; then
  echo "go-tool: building $tool $version (first run only; minutes)" >&2
  GOBIN="$cache/bin" GOFLAGS=-mod=mod CGO_ENABLED=0 go install "$package@$version" >&2
fi
echo "$bin"
