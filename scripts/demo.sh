#!/usr/bin/env bash
# The local demo: a real control plane, the fake upstream APIs, the operator, and examples/.
#
#   scripts/demo.sh up     build, start everything, apply examples/, wait until Ready, show it,
#                          then send keyword messages through the whole chain to the fake X
#   scripts/demo.sh down   stop the operator, the fakes and the control plane
#
# examples/ declare the whole chain: CtwaTracking → SignalsKeyword → SignalsConversionEvent
# (keywordRef) → SignalsPostback (bridgeRef) → XWebEventTag → ConversionBridge. Once it is
# Ready, `up` has customers write the keyword (events seeded through the fake's admin API),
# which Signals counts as the campaign's conversion and reports again as `converted` events;
# the bridge (eventTypes: [converted]) forwards those, and `up` waits until every message
# reached the fake X as a conversion.
#
# Knobs: CTWA_DEMO_NAMESPACE (default ctwa-demo), CTWA_DEMO_MESSAGES (keyword messages to send,
# default 5), CTWA_DEMO_TIMEOUT (seconds to wait for them at X, default 120),
# CTWA_DEMO_METRICS_PORT (18080), CTWA_DEMO_POSTBACK_PORT (18081). `up` may be run again while
# the demo runs: it restarts the operator and the fakes and sends new messages.
# Everything keeps running after `up` until `down`; logs are in target/demo/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/target/demo"
NS="${CTWA_DEMO_NAMESPACE:-ctwa-demo}"
MESSAGES="${CTWA_DEMO_MESSAGES:-5}"
TIMEOUT="${CTWA_DEMO_TIMEOUT:-120}"
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
    ctwatracking/main-number signalskeyword/order-confirmed \
    signalsconversionevent/order-confirmed-conversion xwebeventtag/purchase \
    conversionbridge/ctwa-to-x signalspostback/order-confirmed-postback
  kubectl get ctwa -A

  keyword_messages_to_x "http://127.0.0.1:$port/_admin"

  cat <<TXT

The demo keeps running. Try:
  export KUBECONFIG=$kubeconfig
  kubectl get ctwa -n $NS
  kubectl describe signalskeyword -n $NS order-confirmed
  kubectl get sce -n $NS -o wide                # the campaign's conversion (status.applied)
  kubectl get conversionbridge -n $NS -w        # live events are forwarded every few seconds
  curl -s http://127.0.0.1:${CTWA_DEMO_METRICS_PORT:-18080}/metrics | grep ctwa_bridge
  curl -s http://127.0.0.1:$port/_admin/state | python3 -m json.tool
Logs: $DIR/operator.log, $DIR/fakes.log. Stop it with: make demo-down
TXT
}

# The point of the chain: customers write the keyword, Signals counts each message as the
# campaign's conversion (the SignalsConversionEvent) and reports it again as a `converted`
# event, which the bridge forwards to X. $1 is the fake's admin API base URL.
keyword_messages_to_x() {
  local admin=$1
  local sce=signalsconversionevent/order-confirmed-conversion
  local client app campaign ad keyword_id applied
  client=$(kubectl get -n "$NS" "$sce" -o jsonpath='{.spec.clientId}')
  app=$(kubectl get -n "$NS" "$sce" -o jsonpath='{.spec.appId}')
  campaign=$(kubectl get -n "$NS" "$sce" -o jsonpath='{.spec.campaignId}')
  ad=$(kubectl get -n "$NS" signalskeyword/order-confirmed -o jsonpath='{.spec.adId}')

  # The fakes start empty on every `up`, so wait until the conversion the operator sent to
  # this fake names the keyword's current id (a re-run re-creates the keyword upstream, and
  # the SignalsConversionEvent follows its new id): only messages after that are counted.
  log "waiting until Signals has the campaign's conversion"
  local deadline=$((SECONDS + 90))
  while :; do
    keyword_id=$(kubectl get -n "$NS" signalskeyword/order-confirmed -o jsonpath='{.status.keywordId}')
    applied=$(curl -fsS "$admin/state" | python3 -c '
import json, sys
client, app, campaign, keyword_id = sys.argv[1:5]
state = json.load(sys.stdin)
# Only a keyword this fake knows counts (after a re-run the status may name the last one).
known = any(k.get("id") == keyword_id
            for entry in state.get("keywords", [])
            if (entry["client"], entry["app"]) == (client, app)
            for k in entry["keywords"])
for c in state.get("converted_events", []):
    if known and (c["client"], c["app"], c["campaign_id"]) == (client, app, campaign):
        print(c.get("type") or "", c.get("type_id") or "")
' "$client" "$app" "$campaign" "$keyword_id")
    if [ -n "$keyword_id" ] && [ "$applied" = "keyword $keyword_id" ]; then break; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "Signals never got the conversion of campaign $campaign for keyword ${keyword_id:-?} (has: ${applied:-nothing}); see $DIR/operator.log"
      return 1
    fi
    sleep 1
  done
  echo
  echo "The campaign's conversion in Signals (GET /_admin/state, converted_events):"
  curl -fsS "$admin/state" | python3 -c '
import json, sys
campaign = sys.argv[1]
for c in json.load(sys.stdin)["converted_events"]:
    if c["campaign_id"] == campaign:
        print("  " + json.dumps(c))
' "$campaign"
  kubectl get -n "$NS" "$sce" -o wide

  # N keyword messages from the campaign's ad, dated a few seconds ago (UTC), with ids of
  # this run so that a re-run counts only its own.
  local run; run=$(date -u +%Y%m%d%H%M%S)
  local events ids
  events=$(python3 - "$MESSAGES" "$run" "$app" "$ad" "$campaign" "$keyword_id" <<'PY'
import datetime, json, sys
n, run, app, ad, campaign, keyword_id = sys.argv[1:7]
at = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5))
events = [{
    "id": f"demo-keyword-{run}-{i}",
    "app_id": app,
    "ad_id": ad,
    "campaign_id": campaign,
    "phone": f"4915123{int(run[-6:]) % 1000:03d}{i:03d}",
    "type": "keyword",
    "type_id": keyword_id,
    "type_value": "order confirmed",
    "date": at.strftime("%Y-%m-%dT%H:%M:%S"),
} for i in range(int(n))]
print(json.dumps(events))
PY
)
  ids=$(python3 -c 'import json,sys; print(" ".join(e["id"] for e in json.loads(sys.argv[1])))' "$events")
  echo
  echo "$MESSAGES customers write the keyword (type keyword, type_id $keyword_id, campaign $campaign):"
  curl -fsS -X POST -H 'Content-Type: application/json' --data "$events" \
    "$admin/events/$client/$app" >/dev/null
  echo "  seeded $ids"

  log "waiting up to ${TIMEOUT}s for the conversions at X (the bridge polls every pollInterval)"
  local arrived=0
  deadline=$((SECONDS + TIMEOUT))
  while :; do
    arrived=$(curl -fsS "$admin/conversions" | python3 -c '
import json, sys
want = {i + "-converted" for i in sys.argv[1].split()}
got = {c["conversion"].get("conversion_id") for c in json.load(sys.stdin)}
print(len(want & got))
' "$ids")
    [ "$arrived" -ge "$MESSAGES" ] || [ "$SECONDS" -ge "$deadline" ] && break
    sleep 2
  done
  echo
  echo "Conversions at X (GET /_admin/conversions) for these messages:"
  curl -fsS "$admin/conversions" | python3 -c '
import json, sys
want = {i + "-converted" for i in sys.argv[1].split()}
for c in json.load(sys.stdin):
    conv = c["conversion"]
    if conv.get("conversion_id") in want:
        print("  pixel %s  conversion_id %s  event_id %s  conversion_time %s" % (
            c["pixel_id"], conv["conversion_id"], conv.get("event_id"), conv.get("conversion_time")))
' "$ids"
  echo
  echo "$arrived of $MESSAGES keyword messages reached X as conversions"
  if [ "$arrived" -lt "$MESSAGES" ]; then
    log "timed out after ${TIMEOUT}s; see $DIR/operator.log and kubectl describe cbr -n $NS ctwa-to-x"
    return 1
  fi
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
