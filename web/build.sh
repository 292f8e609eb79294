#!/usr/bin/env bash
# Builds the page's WebAssembly: the unroll-web crate for wasm32-unknown-unknown, then its
# JavaScript bindings with wasm-bindgen-cli at the exact version of the wasm-bindgen crate.
# Output: web/pkg/ (unroll_web.js, unroll_web_bg.wasm). Serve web/ with web/serve.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# Must equal the `wasm-bindgen = "=…"` pin in web/Cargo.toml.
WASM_BINDGEN=0.2.130

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN" ]; then
  echo "installing wasm-bindgen-cli $WASM_BINDGEN"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN"
fi

# Cargo says where it put the wasm (CARGO_TARGET_DIR, a workspace's target/, or a config's
# build.target-dir): its JSON messages name every artifact it built.
wasm=$(cargo build -p unroll-web --release --target wasm32-unknown-unknown \
    --message-format=json-render-diagnostics |
  grep -o '"filenames":\[[^]]*\]' | grep -o '[^"]*/unroll_web\.wasm' | tail -n 1)
[ -n "$wasm" ] && [ -f "$wasm" ] || { echo "cargo reported no unroll_web.wasm" >&2; exit 1; }
wasm-bindgen --target web --no-typescript --out-dir web/pkg "$wasm"
echo "built web/pkg/unroll_web_bg.wasm ($(stat -c %s web/pkg/unroll_web_bg.wasm) bytes); serve it with web/serve.sh"
