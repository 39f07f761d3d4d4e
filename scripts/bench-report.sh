#!/usr/bin/env bash
# Assembles BENCHMARKS.md from what `make bench` measured (target/bench/).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$ROOT/target/bench"
cat <<HDR
# Benchmarks

Measured by \`make bench\` on $(date -u +%Y-%m-%d). Nothing here is asserted by a test; the
numbers describe one run on this machine:

- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') — $(nproc) cores
- Memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2/1024/1024}' /proc/meminfo)
- Kernel: $(uname -r); $(rustc --version)
- Control plane: the local kube-apiserver v1.34.4 + etcd of the tests; upstream APIs: the fakes
  in \`fake-upstreams/\` on loopback, with the latency each section states.
- The operator is the release build, run as its own process.

HDR
# The targets of issue 7, each against what was measured.
echo "## Targets"
echo
echo "| target | measured | |"
echo "|---|---|---|"
for f in "$DIR"/t-1-*.md "$DIR"/t-2-*.md; do [ -f "$f" ] && cat "$f"; done
if [ -f "$DIR/pipeline.txt" ]; then
  # The median throughput of map_event/single, in events per second.
  awk '/^map_event\/single/ {on=1} on && /thrpt:/ {
         v=$4; u=$5; if (u ~ /^K/) v*=1e3; if (u ~ /^M/) v*=1e6;
         printf "| at least 1M events/s per core in the micro-benchmark | %.2fM events/s | %s |\n",
                v/1e6, (v >= 1e6 ? "met" : "**missed**"); exit }' "$DIR/pipeline.txt"
fi
for f in "$DIR"/t-4-*.md "$DIR"/t-5-*.md "$DIR"/t-6-*.md; do [ -f "$f" ] && cat "$f"; done
echo
for f in "$DIR"/1-*.md "$DIR"/2-*.md; do [ -f "$f" ] && { cat "$f"; echo; }; done
if [ -f "$DIR/pipeline.txt" ]; then
  echo "## 3. Bridge pipeline micro-benchmark (criterion, one core)"
  echo
  echo "Map + normalise + hash one Signals event, and map + serialise a 500-conversion body:"
  echo
  echo '```'
  # The measurement of each benchmark, without criterion's comparison to an earlier run.
  awk '/^[a-z]/ {inchange=0; if ($0 !~ /time:/) print} /change:/ {inchange=1}
       /time:|thrpt:/ && !inchange {print}' "$DIR/pipeline.txt"
  echo '```'
  echo
fi
for f in "$DIR"/4-*.md "$DIR"/4b-*.md "$DIR"/5-*.md "$DIR"/6-*.md; do [ -f "$f" ] && { cat "$f"; echo; }; done
cat <<'NOTES'
## Reading the numbers

- The fakes run inside the benchmark process and share its two cores with the control plane
  and the operator; end-to-end figures are bounded by that setup, not by the operator alone.
  The operator's own CPU time is reported next to each wall time for that reason: in the
  million-event run it is the better measure of what the bridge costs.
- Steady state: reads per object per interval are the drift checks (one GET per object per
  resync interval, spread by ±10 % jitter); writes stay at zero, upstream and in status.
- The rate-budget run uses X's published budget with a fixed 15-minute window: the bridge sends
  the whole budget, then waits for X's `x-rate-limit-reset` instead of provoking 429s.
NOTES
