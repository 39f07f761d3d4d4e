#!/usr/bin/env bash
# The oldest Kubernetes minor the chart declares (Chart.yaml kubeVersion >= 1.30) accepts what
# the project ships: a kube-apiserver of that minor (built once into the cache by
# scripts/build-control-plane.sh, run on loopback without a controller manager) gets
#   1. the CRDs, applied server-side for real, and their CEL rules enforced
#      (an invalid object is refused with the rule's message, an edit of an immutable id too);
#   2. every example in examples/, applied server-side as a dry run;
#   3. the chart, rendered for that version in its main value combinations, applied
#      server-side as a dry run.
# The tests in tests/ do all of this and more against the current version (1.34).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VERSION="${CTWA_COMPAT_VERSION:-v1.30.14}"
export K8S_VERSION="$VERSION" CTWA_CONTROL_PLANE_API_ONLY=1
export CTWA_CONTROL_PLANE_DIR="$ROOT/target/control-plane-$VERSION"

say() { echo "compat-check: $*" >&2; }
fail() { echo "compat-check: error: $*" >&2; exit 1; }

HELM="$(scripts/go-tool.sh helm)"
KUBECONFIG="$(scripts/control-plane.sh up)"
export KUBECONFIG
trap 'scripts/control-plane.sh down >/dev/null 2>&1 || true' EXIT
server=$(kubectl version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')
[ "$server" = "$VERSION" ] || fail "the API server reports $server, not $VERSION"
say "kube-apiserver $server"

apply() { kubectl apply --server-side --field-manager=compat-check "$@"; }

# 1. The CRDs, and their rules enforced by this version.
apply -f crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl create namespace compat --dry-run=client -o yaml | apply -f - >/dev/null
refused=$(apply -n compat -f - 2>&1 <<'EOF' || true
apiVersion: ctwa.dev/v1alpha1
kind: XWebEventTag
metadata: {name: too-long-view}
spec: {accountId: acc1, name: Purchase, type: PURCHASE, clickWindow: 7, viewThroughWindow: 14,
       secretRef: {name: x-ads}}
EOF
)
grep -q "viewThroughWindow must be less than or equal to clickWindow" <<<"$refused" \
  || fail "an invalid XWebEventTag was not refused by its CEL rule: $refused"
apply -n compat -f - >/dev/null <<'EOF'
apiVersion: ctwa.dev/v1alpha1
kind: XWebEventTag
metadata: {name: compat-immutable}
spec: {accountId: acc1, name: Purchase, type: PURCHASE, clickWindow: 30, viewThroughWindow: 1,
       secretRef: {name: x-ads}}
EOF
refused=$(kubectl -n compat patch xwebeventtag compat-immutable --type=merge -p '{"spec":{"accountId":"acc2"}}' 2>&1 || true)
grep -q "accountId is immutable" <<<"$refused" \
  || fail "an edit of an immutable id was not refused (transition rule): $refused"
say "CRDs established; CEL rules, transition rules included, enforced"

# 2. Every example.
apply -n compat --dry-run=server -f examples/ >/dev/null
say "every example in examples/ accepted"

# 3. The chart, for this version.
kubectl create namespace ctwa-system --dry-run=client -o yaml | apply -f - >/dev/null
# The test Pod names the ServiceAccount, which admission wants to exist.
kubectl -n ctwa-system create serviceaccount ctwa-ctwa-operator --dry-run=client -o yaml | apply -f - >/dev/null
combinations=(
  ""
  "--set crds.enabled=false"
  "--set crds.keep=false --set replicaCount=3 --set networkPolicy.enabled=true"
  "--set watchNamespaces={compat} --set ingress.enabled=true --set ingress.host=ctwa.example.com --set publicBaseUrl=https://ctwa.example.com --set postbackService.type=LoadBalancer"
)
for values in "${combinations[@]}"; do
  # shellcheck disable=SC2086 # each combination is a list of flags
  "$HELM" template ctwa charts/ctwa-operator --namespace ctwa-system --kube-version "${VERSION#v}" $values \
    | apply --force-conflicts --dry-run=server -f - >/dev/null \
    || fail "the chart rendered with '${values:-defaults}' was refused"
  say "chart with ${values:-default values} accepted"
done
say "OK: Kubernetes $VERSION accepts the CRDs, the examples and the chart"
