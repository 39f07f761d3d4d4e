#!/usr/bin/env bash
# Lints the release workflow(s) under .github/workflows with actionlint (built from source
# into the cache by scripts/go-tool.sh). Fails on any finding.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ACTIONLINT="$("$ROOT/scripts/go-tool.sh" actionlint)"
cd "$ROOT"
"$ACTIONLINT" -no-color .github/workflows/*.yml
echo "lint-workflows: OK"
