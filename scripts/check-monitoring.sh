#!/usr/bin/env bash
# Checks what the chart ships for monitoring (charts/ctwa-operator/files/monitoring) with the
# real tools, failing loudly:
#  1. helm lint and helm template with monitoring on; off by default; values reach the rules;
#  2. promtool check rules on the rendered PrometheusRule spec (with the default and with
#     non-default thresholds);
#  3. promtool test rules on files/monitoring/tests/*.yaml, which must make every alert fire and
#     stay silent at least once;
#  4. every PromQL query of the Grafana dashboard (panel targets and variable queries), with the
#     Grafana variables replaced, parsed by promtool as recording rules; plus the dashboard's
#     datasource wiring, and the ConfigMap carrying the JSON unchanged.
# Needs go (for the first build of helm and promtool) and python3 (stdlib only).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CHART="$ROOT/charts/ctwa-operator"
MON="$CHART/files/monitoring"
NS=ctwa-system
RELEASE=ctwa-operator
HELM="$("$ROOT/scripts/go-tool.sh" helm)"
PROMTOOL="$("$ROOT/scripts/go-tool.sh" promtool)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
fail() { echo "check-monitoring: $*" >&2; exit 1; }
step() { echo "== $*"; }

render() { # render <out> [--set ...]: the whole chart in $NS
  local out="$1"; shift
  "$HELM" template "$RELEASE" "$CHART" --namespace "$NS" --kube-version 1.34.4 "$@" >"$out" \
    || fail "helm template $* failed"
}

ON=(--set monitoring.prometheusRule.enabled=true --set monitoring.grafanaDashboard.enabled=true)

step "helm lint with monitoring on"
"$HELM" lint "$CHART" --namespace "$NS" --kube-version 1.34.4 "${ON[@]}" --strict \
  || fail "helm lint failed"

step "helm template: off by default, on when enabled"
render "$WORK/default.yaml"
render "$WORK/on.yaml" "${ON[@]}" \
  --set monitoring.prometheusRule.labels.release=prometheus \
  --set monitoring.grafanaDashboard.namespace=grafana \
  --set-string monitoring.grafanaDashboard.annotations.grafana_folder=CTWA
# A values file: `--set` would pass 0.2 as a string, which the schema refuses.
printf '%s\n' 'monitoring:' \
  '  prometheusRule: {enabled: true, lagThresholdSeconds: 120, rejectedRatioThreshold: 0.2, for: 30m}' \
  >"$WORK/custom-values.yaml"
render "$WORK/custom.yaml" -f "$WORK/custom-values.yaml"
# The schema keeps a typo or a bad value from silently disabling an alert.
for bad in monitoring.prometheusRule.for=soon monitoring.prometheusRule.rejectedRatioThreshold=5 \
  monitoring.prometheusRule.lagThreshold=60 monitoring.grafanaDashboard.enable=true; do
  if err="$("$HELM" template "$RELEASE" "$CHART" --kube-version 1.34.4 --set "$bad" 2>&1 >/dev/null)"; then
    fail "values.schema.json accepts $bad"
  fi
  # Refused for the right reason, not e.g. for a missing --kube-version.
  grep -q "schema" <<<"$err" || fail "$bad: helm failed, but not on the schema: $err"
done

export WORK NS RELEASE MON
python3 - <<'EOF' || fail "extracting the rendered monitoring objects failed"
"""Cuts the PrometheusRule's spec and the dashboard ConfigMap out of the rendered manifests.
No YAML library: the chart's own templates fix the layout (spec at column 0, its content
indented by 2; the dashboard as a block scalar indented by 4), and anything else is an error."""
import json, os, re, sys
work, ns, release, mon = (os.environ[k] for k in ("WORK", "NS", "RELEASE", "MON"))

def docs(path):
    text = open(path).read()
    return [d for d in re.split(r"(?m)^---\s*$", text) if d.strip()]

def kind(doc):
    m = re.search(r"(?m)^kind: (\S+)$", doc)
    return m.group(1) if m else None

def block(doc, header, indent):
    """The lines after `header` indented by at least `indent`, dedented."""
    lines = doc.split("\n")
    start = lines.index(header) + 1
    out = []
    for line in lines[start:]:
        if line.strip() and not line.startswith(" " * indent):
            break
        out.append(line[indent:])
    while out and not out[-1].strip():
        out.pop()
    if not out:
        sys.exit(f"nothing under {header!r}")
    return "\n".join(out) + "\n"

def check(cond, msg):
    if not cond:
        sys.exit(msg)

default = docs(f"{work}/default.yaml")
for d in default:
    check(kind(d) != "PrometheusRule", "a PrometheusRule is rendered by default")
    check(not (kind(d) == "ConfigMap" and "ctwa-operator.json" in d), "the dashboard is rendered by default")

def one(path, k):
    found = [d for d in docs(path) if kind(d) == k and (k != "ConfigMap" or "ctwa-operator.json:" in d)]
    check(len(found) == 1, f"{path}: {len(found)} {k} objects, want 1")
    return found[0]

for name in ("on", "custom"):
    rule = one(f"{work}/{name}.yaml", "PrometheusRule")
    check("apiVersion: monitoring.coreos.com/v1\n" in rule, "PrometheusRule is not monitoring.coreos.com/v1")
    check(f"\n  namespace: {ns}\n" in rule, "PrometheusRule is not in the release namespace")
    check(f"app.kubernetes.io/instance: {release}" in rule, "PrometheusRule lacks the chart labels")
    spec = block(rule, "spec:", 2)
    check(spec.startswith("groups:\n"), "the PrometheusRule spec does not start with groups:")
    check("{{ $labels." in spec and "{{`" not in spec, "Prometheus templates were not passed through verbatim")
    open(f"{work}/{name}.rules.yaml", "w").write(spec)

on = one(f"{work}/on.yaml", "PrometheusRule")
check("    release: prometheus\n" in on, "monitoring.prometheusRule.labels are not on the PrometheusRule")
custom = open(f"{work}/custom.rules.yaml").read()
for needle in ("ctwa_bridge_lag_seconds) > 120\n", ") > 0.2\n", "for: 30m"):
    check(needle in custom, f"non-default values do not reach the rules: no {needle!r}")
check(f'ctwa_leader{{namespace="{ns}"}}' in custom, "the leader rules are not scoped to the release namespace")

cm = one(f"{work}/on.yaml", "ConfigMap")
check("\n  namespace: grafana\n" in cm, "monitoring.grafanaDashboard.namespace is not used")
check('\n    grafana_dashboard: "1"\n' in cm, "the ConfigMap lacks the sidecar label")
check("\n    grafana_folder: CTWA\n" in cm, "monitoring.grafanaDashboard.annotations are not used")
shipped = json.loads(block(cm, "  ctwa-operator.json: |-", 4))
check(shipped == json.load(open(f"{mon}/dashboard.json")), "the ConfigMap's dashboard differs from dashboard.json")
EOF

step "promtool check rules (default and non-default values)"
"$PROMTOOL" check rules --lint=all --lint-fatal "$WORK/on.rules.yaml" "$WORK/custom.rules.yaml" \
  || fail "promtool check rules rejected the PrometheusRule"

step "promtool test rules"
shopt -s nullglob
tests=("$MON"/tests/*.yaml)
[ ${#tests[@]} -gt 0 ] || fail "no rule tests in $MON/tests"
mkdir "$WORK/tests"
cp "$WORK/on.rules.yaml" "$WORK/tests/alerts.rules.yaml"
cp "${tests[@]}" "$WORK/tests/"
python3 - "$WORK/tests/alerts.rules.yaml" "${tests[@]}" <<'EOF' || fail "the rule tests do not cover every alert"
"""Every alert must be shown to fire (a non-empty exp_alerts) and to stay silent (an empty one)."""
import re, sys
rules = open(sys.argv[1]).read()
alerts = set(re.findall(r"(?m)^\s*- alert: (\S+)$", rules))
fires, silent = set(), set()
for path in sys.argv[2:]:
    current = None
    for line in open(path):
        m = re.match(r"\s*alertname: (\S+)\s*$", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"\s*exp_alerts:\s*(\[\])?\s*$", line)
        if m and current:
            (silent if m.group(1) else fires).add(current)
            current = None
missing = [f"{a} never fires" for a in sorted(alerts - fires)] + \
          [f"{a} is never shown silent" for a in sorted(alerts - silent)] + \
          [f"{a} is tested but not an alert" for a in sorted((fires | silent) - alerts)]
if not alerts or missing:
    sys.exit("\n".join(missing) or "no alerts found")
print(f"{len(alerts)} alerts, each fires and stays silent in a test")
EOF
(cd "$WORK/tests" && "$PROMTOOL" test rules "${tests[@]##*/}") || fail "promtool test rules failed"

step "dashboard queries"
python3 - "$MON/dashboard.json" "$WORK/dashboard.rules.yaml" <<'EOF' || fail "the dashboard is not well-formed"
"""Writes every PromQL query of the dashboard as a recording rule (variables replaced) for
promtool to parse, after checking the wiring Grafana needs."""
import json, re, sys
dash = json.load(open(sys.argv[1]))
errors = []
DS = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's built-in interval variables, as PromQL accepts them.
BUILTIN = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
           "__interval_ms": "60000", "__range_s": "3600", "__range_ms": "3600000"}
variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")

if not 36 <= dash.get("schemaVersion", 0) <= 41:
    errors.append(f"schemaVersion {dash.get('schemaVersion')} is not a current one")
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    errors.append("no `datasource` variable of type datasource for prometheus")
for name in ("namespace", "bridge"):
    v = variables.get(name)
    q = v and (v["query"]["query"] if isinstance(v["query"], dict) else v["query"])
    if not v or v.get("type") != "query" or not q.startswith("label_values(ctwa_bridge_ready") \
            or not q.endswith(f", {name})"):
        errors.append(f"variable {name} is not label_values(ctwa_bridge_ready..., {name})")

def substitute(expr, where):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTIN:
            return BUILTIN[name]
        if name in variables:
            # Every custom variable is a multi-value regex (allValue .*); it is only valid
            # inside a =~ matcher, and promtool tells if it is used anywhere else.
            return ".*"
        errors.append(f"{where}: unknown variable ${name}")
        return m.group(0)
    return VAR.sub(repl, expr)

queries = []  # (where, promql, legend)
for name, v in variables.items():
    if v.get("type") != "query":
        continue
    if v.get("datasource") != DS:
        errors.append(f"variable {name} does not use ${{datasource}}")
    q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
    m = re.fullmatch(r"\s*(?:label_values\((.+),\s*\w+\)|query_result\((.+)\)|label_values\(\w+\)|metrics\(.*\)|label_names\(\))\s*", q)
    if not m:
        errors.append(f"variable {name}: unknown query {q!r}")
    elif m.group(1) or m.group(2):
        queries.append((f"variable {name}", m.group(1) or m.group(2), ""))

ids = set()
def walk(panels):
    for p in panels:
        if p.get("id") in ids:
            errors.append(f"panel id {p.get('id')} is used twice")
        ids.add(p.get("id"))
        if p.get("type") == "row":
            walk(p.get("panels", []))
            continue
        where = f"panel {p.get('id')} {p.get('title')!r}"
        if p.get("datasource") != DS:
            errors.append(f"{where} does not use ${{datasource}}")
        targets = p.get("targets") or []
        if not targets:
            errors.append(f"{where} has no query")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            errors.append(f"{where}: refIds {refs} are not unique")
        for t in targets:
            if t.get("datasource") != DS:
                errors.append(f"{where} {t.get('refId')} does not use ${{datasource}}")
            if not t.get("expr", "").strip():
                errors.append(f"{where} {t.get('refId')} has no expr")
                continue
            queries.append((f"{where} {t['refId']}", t["expr"], t.get("legendFormat", "")))
walk(dash.get("panels", []))

out = ["groups:", "  - name: dashboard", "    rules:"]
for i, (where, expr, legend) in enumerate(queries):
    promql = substitute(expr, where)
    # A legend can only show labels the query keeps.
    kept = {l.strip() for g in re.findall(r"\bby\s*\(([^)]*)\)", expr) for l in g.split(",")}
    for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
        if kept and label not in kept:
            errors.append(f"{where}: legend shows {label}, which the query aggregates away")
    out.append(f"      - record: dashboard:query_{i}")
    out.append(f"        expr: {json.dumps(promql)}")
    print(f"  {where}: {promql}")
if errors:
    sys.exit("\n".join(errors))
if not queries:
    sys.exit("no queries found")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print(f"{len(queries)} queries")
EOF
"$PROMTOOL" check rules --lint=none "$WORK/dashboard.rules.yaml" \
  || fail "promtool rejected a dashboard query (dashboard:query_N is the Nth query listed above)"

# The checks above must be able to fail: a broken query has to be rejected.
printf 'groups:\n  - name: broken\n    rules:\n      - record: broken:query\n        expr: "sum by (x) (rate(ctwa_x[5m])"\n' >"$WORK/broken.rules.yaml"
if "$PROMTOOL" check rules "$WORK/broken.rules.yaml" >/dev/null 2>&1; then
  fail "promtool accepted a broken query: the checks prove nothing"
fi
echo "check-monitoring: OK"
