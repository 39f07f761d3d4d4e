#!/usr/bin/env bash
# The local demo: a real control plane, the fake upstream APIs, the operator, and examples/.
#
#   scripts/demo.sh up     build, start everything, apply examples/, wait until Ready, show it
#   scripts/demo.sh down   stop the operator, the fakes and the control plane
#
# Everything keeps running after `up` until `down`; logs are in target/demo/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/target/demo"
NS=ctwa-demo
log() { echo "demo: $*" >&2; }

stop_pid() {
  local f="$DIR/$1.pid"
  if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
    kill "$(cat "$f")" 2>/dev/null || true
  fi
  rm -f "$f"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

up() {
  mkdir -p "$DIR"
  log "building the operator and the fakes"
  (cd "$ROOT" && cargo build -q -p ctwa-operator -p fake-upstreams --bins)
  local kubeconfig
  kubeconfig=$("$ROOT/scripts/control-plane.sh" up)
  export KUBECONFIG="$kubeconfig"
  kubectl apply --server-side -f "$ROOT/crds/" >/dev/null
  kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null

  stop_pid fakes
  stop_pid operator
  local port; port=$(free_port)
  log "starting the fake upstream APIs on 127.0.0.1:$port"
  setsid "$ROOT/target/debug/ctwa-fake-upstreams" --addr "127.0.0.1:$port" --demo \
    </dev/null >"$DIR/fakes.log" 2>&1 &
  echo $! > "$DIR/fakes.pid"
  for _ in $(seq 1 50); do curl -fsS -o /dev/null "http://127.0.0.1:$port/_admin/state" && break; sleep 0.1; done

  log "starting the operator (namespace $NS)"
  setsid "$ROOT/target/debug/ctwa-operator" run --namespace "$NS" \
    --hub-url "http://127.0.0.1:$port/hub" \
    --signals-url "http://127.0.0.1:$port/signals" \
    --x-ads-url "http://127.0.0.1:$port/x/12" \
    --metrics-addr "127.0.0.1:${CTWA_DEMO_METRICS_PORT:-18080}" \
    --postback-addr "127.0.0.1:${CTWA_DEMO_POSTBACK_PORT:-18081}" \
    --public-base-url "http://127.0.0.1:${CTWA_DEMO_POSTBACK_PORT:-18081}" \
    </dev/null >"$DIR/operator.log" 2>&1 &
  echo $! > "$DIR/operator.pid"

  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl apply -n "$NS" -f "$ROOT/examples/"
  log "waiting until the managed objects are Ready"
  kubectl wait -n "$NS" --for=condition=Ready --timeout=90s \
    ctwatracking/main-number signalskeyword/order-confirmed xwebeventtag/purchase \
    conversionbridge/ctwa-to-x signalspostback/order-confirmed-postback
  kubectl get ctwa -A
  cat <<TXT

The demo keeps running. Try:
  export KUBECONFIG=$kubeconfig
  kubectl get ctwa -n $NS
  kubectl describe signalskeyword -n $NS order-confirmed
  kubectl get conversionbridge -n $NS -w        # live events are forwarded every few seconds
  curl -s http://127.0.0.1:${CTWA_DEMO_METRICS_PORT:-18080}/metrics | grep ctwa_bridge
  curl -s http://127.0.0.1:$port/_admin/state | python3 -m json.tool
Logs: $DIR/operator.log, $DIR/fakes.log. Stop it with: make demo-down
TXT
}

down() {
  stop_pid operator
  stop_pid fakes
  "$ROOT/scripts/control-plane.sh" down
  rm -rf "$DIR"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
