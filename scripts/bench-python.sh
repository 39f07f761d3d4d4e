#!/usr/bin/env bash
# A Python with `requests` for the naive-forwarder baseline of `make bench`, in a venv under the
# cache; prints the interpreter's path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${CTWA_CACHE_DIR:-$HOME/.cache/ctwa-operator}/bench-venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import requests' 2>/dev/null; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q -r "$ROOT/scripts/requirements-bench.txt" >&2
fi
echo "$VENV/bin/python"
