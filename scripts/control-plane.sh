#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for tests and for people:
# etcd + kube-apiserver + kube-controller-manager on random free ports.
#
#   scripts/control-plane.sh up       start it unless it already runs; prints the kubeconfig path
#   scripts/control-plane.sh down     stop it (by PID) and remove its state
#   scripts/control-plane.sh status   exit 0 when it runs and answers /readyz
#   scripts/control-plane.sh env      print `export KUBECONFIG=...`
#
# State lives in $CTWA_CONTROL_PLANE_DIR (default: target/control-plane of this checkout).
# K8S_VERSION picks another Kubernetes release (default: build-control-plane.sh's), and
# CTWA_CONTROL_PLANE_API_ONLY=1 starts no kube-controller-manager (enough to validate
# manifests server-side, as scripts/compat-check.sh does).
# The binaries come from scripts/build-control-plane.sh (cached under ~/.cache) and etcd from
# the crates.io crate etcd-bin-vendored (or $CTWA_ETCD_BIN).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${CTWA_CONTROL_PLANE_DIR:-$ROOT/target/control-plane}"
KUBECONFIG_PATH="$DIR/kubeconfig"

log() { echo "control-plane: $*" >&2; }

pid_alive() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

readyz() {
  [ -f "$DIR/apiserver.port" ] && [ -f "$DIR/token" ] || return 1
  curl -fsS --max-time 2 --cacert "$DIR/ca.crt" -H "Authorization: Bearer $(cat "$DIR/token")" \
    "https://127.0.0.1:$(cat "$DIR/apiserver.port")/readyz" >/dev/null 2>&1
}

API_ONLY="${CTWA_CONTROL_PLANE_API_ONLY:-}"
if [ -n "$API_ONLY" ]; then export CTWA_CONTROL_PLANE_BINARIES=kube-apiserver; fi

running() { pid_alive etcd && pid_alive kube-apiserver && { [ -n "$API_ONLY" ] || pid_alive kube-controller-manager; } && readyz; }

stop_all() {
  for p in kube-controller-manager kube-apiserver etcd; do
    if pid_alive "$p"; then
      local pid; pid=$(cat "$DIR/$p.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}

free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

wait_for() { # description, seconds, command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 5))); do "$@" && return 0; sleep 0.2; done
  log "$what did not come up within ${secs}s; last log lines:"
  tail -n 30 "$DIR/$what.log" >&2 || true
  return 1
}

etcd_bin() {
  if [ -n "${CTWA_ETCD_BIN:-}" ]; then echo "$CTWA_ETCD_BIN"; return; fi
  (cd "$ROOT" && cargo run -q -p ctwa-testenv --bin ctwa-etcd-path)
}

make_certs() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -keyout "$DIR/ca.key" -out "$DIR/ca.crt" -subj "/CN=ctwa-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$DIR/apiserver.key" -out "$DIR/apiserver.csr" -subj "/CN=kube-apiserver" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > "$DIR/apiserver.ext"
  openssl x509 -req -in "$DIR/apiserver.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial \
    -days 3650 -out "$DIR/apiserver.crt" -extfile "$DIR/apiserver.ext" 2>/dev/null
  openssl genrsa -out "$DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub" 2>/dev/null
}

write_kubeconfig() {
  local port=$1 token=$2
  cat > "$KUBECONFIG_PATH.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: ctwa-local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 < "$DIR/ca.crt")
users:
- name: ctwa-admin
  user:
    token: $token
contexts:
- name: ctwa-local
  context:
    cluster: ctwa-local
    user: ctwa-admin
current-context: ctwa-local
KC
  mv "$KUBECONFIG_PATH.tmp" "$KUBECONFIG_PATH"
}

start() {
  local bindir etcd
  bindir=$("$ROOT/scripts/build-control-plane.sh")
  etcd=$(etcd_bin)
  [ -x "$etcd" ] || { log "etcd binary not found at '$etcd'"; exit 1; }
  stop_all
  rm -rf "$DIR"; mkdir -p "$DIR"
  make_certs
  local token; token=$(openssl rand -hex 24)
  echo "$token" > "$DIR/token"
  echo "$token,ctwa-admin,ctwa-admin,\"system:masters\"" > "$DIR/tokens.csv"
  read -r etcd_port peer_port api_port <<<"$(free_ports 3)"
  echo "$api_port" > "$DIR/apiserver.port"

  log "starting etcd on 127.0.0.1:$etcd_port"
  setsid "$etcd" --name ctwa --data-dir "$DIR/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "ctwa=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn \
    </dev/null >"$DIR/etcd.log" 2>&1 9>&- &
  echo $! > "$DIR/etcd.pid"
  wait_for etcd 30 curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$etcd_port/health"

  log "starting kube-apiserver on 127.0.0.1:$api_port"
  setsid "$bindir/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$DIR/apiserver.crt" --tls-private-key-file "$DIR/apiserver.key" \
    --client-ca-file "$DIR/ca.crt" --token-auth-file "$DIR/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$DIR/sa.pub" --service-account-signing-key-file "$DIR/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true \
    --cert-dir "$DIR/apiserver-certs" --profiling=false --v=1 \
    </dev/null >"$DIR/kube-apiserver.log" 2>&1 9>&- &
  echo $! > "$DIR/kube-apiserver.pid"
  wait_for kube-apiserver 90 readyz
  write_kubeconfig "$api_port" "$token"
  if [ -n "$API_ONLY" ]; then log "ready (API server only): KUBECONFIG=$KUBECONFIG_PATH"; return; fi

  log "starting kube-controller-manager"
  setsid "$bindir/kube-controller-manager" \
    --kubeconfig "$KUBECONFIG_PATH" --authentication-skip-lookup=true \
    --service-account-private-key-file "$DIR/sa.key" --root-ca-file "$DIR/ca.crt" \
    --leader-elect=false --use-service-account-credentials=false --secure-port 0 \
    --controllers '*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller,-persistentvolume-attach-detach-controller' \
    --concurrent-gc-syncs 5 --v=1 \
    </dev/null >"$DIR/kube-controller-manager.log" 2>&1 9>&- &
  echo $! > "$DIR/kube-controller-manager.pid"
  sleep 1
  pid_alive kube-controller-manager || { log "kube-controller-manager exited:"; tail -n 30 "$DIR/kube-controller-manager.log" >&2; exit 1; }
  log "ready: KUBECONFIG=$KUBECONFIG_PATH"
}

cmd=${1:-up}
mkdir -p "$(dirname "$DIR")"
case "$cmd" in
  up)
    exec 9>"$DIR.lock"; flock 9
    if running; then log "already running"; else start; fi
    echo "$KUBECONFIG_PATH" ;;
  down)
    exec 9>"$DIR.lock"; flock 9
    stop_all; rm -rf "$DIR"; log "stopped" ;;
  status)
    if running; then echo "running: KUBECONFIG=$KUBECONFIG_PATH"; else echo "not running"; exit 1; fi ;;
  env)
    echo "export KUBECONFIG=$KUBECONFIG_PATH" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
