#!/usr/bin/env bash
# Serves web/ on http://localhost:${1:-8000}/ (build it first with web/build.sh). WebGPU needs a
# secure context: localhost is one.
set -euo pipefail
cd "$(dirname "$0")"
[ -f pkg/unroll_web_bg.wasm ] || { echo "web/pkg is missing: run web/build.sh first" >&2; exit 1; }
exec python3 -m http.server --bind 127.0.0.1 "${1:-8000}"
