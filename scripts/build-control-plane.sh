#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager from the Go module k8s.io/kubernetes
# through the Go module proxy, once, into a cache outside the work tree.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every k8s.io staging module
# with a local path. We write a throwaway module that requires it and replaces each staging
# module with its published v0.Y.Z instead.
#
# Prints the directory holding the binaries on stdout; progress goes to stderr.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
CACHE_ROOT="${CTWA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ctwa-operator}"
OUT="$CACHE_ROOT/kubernetes-$K8S_VERSION"
# CTWA_CONTROL_PLANE_BINARIES="kube-apiserver" builds only the API server (the compatibility
# check of an older minor needs nothing else).
read -r -a BINARIES <<< "${CTWA_CONTROL_PLANE_BINARIES:-kube-apiserver kube-controller-manager}"

done_already=1
for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || done_already=0; done
if [ "$done_already" = 1 ]; then echo "$OUT"; exit 0; fi

command -v go >/dev/null || { echo "build-control-plane: go is required" >&2; exit 1; }
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.build-$K8S_VERSION.lock"
flock 9
# Another process may have finished the build while we waited for the lock.
done_already=1
for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || done_already=0; done
if [ "$done_already" = 1 ]; then echo "$OUT"; exit 0; fi

STAGING_VERSION="v0.${K8S_VERSION#v1.}"
WORK="$CACHE_ROOT/build-$K8S_VERSION"
rm -rf "$WORK"; mkdir -p "$WORK"
cd "$WORK"
echo "build-control-plane: resolving k8s.io/kubernetes@$K8S_VERSION" >&2
gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')

{
  echo "module ctwa.dev/control-plane-build"
  echo
  echo "go $(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$gomod" | awk -v v="$STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > go.mod
# The staging modules are required at v0.0.0 by k8s.io/kubernetes; the replace lines give
# them real versions. A tiny main keeps `go mod tidy` from dropping the requirement.
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)
GO
echo "build-control-plane: go mod tidy" >&2
GOFLAGS=-mod=mod go mod tidy -e >&2

ver="${K8S_VERSION#v}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
  -X k8s.io/component-base/version.gitMajor=${ver%%.*} \
  -X k8s.io/component-base/version.gitMinor=$(echo "$ver" | cut -d. -f2) \
  -X k8s.io/component-base/version.gitTreeState=clean \
  -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
  -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
mkdir -p "$OUT.tmp"
for b in "${BINARIES[@]}"; do
  echo "build-control-plane: go build $b (takes minutes the first time)" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$OUT.tmp/$b" "k8s.io/kubernetes/cmd/$b" >&2
done
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
rm -rf "$WORK"
echo "$OUT"
