#!/usr/bin/env bash
# Regenerates contracts/build/* from contracts/ERC20.sol using solc-js (npm `solc`).
# solc-js is installed outside the repo, into ${BCOS_CACHE:-$HOME/.cache/bcos}/solcjs.
# Idempotent: repeated runs produce byte-identical outputs.
set -euo pipefail

SOLC_VERSION="${SOLC_VERSION:-0.8.28}"
CACHE_DIR="${BCOS_CACHE:-$HOME/.cache/bcos}"
SOLCJS_DIR="$CACHE_DIR/solcjs"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

command -v node >/dev/null || { echo "error: node is required" >&2; exit 1; }

installed=""
pkg="$SOLCJS_DIR/node_modules/solc/package.json"
if [[ -f "$pkg" ]]; then
  installed="$(node -p "require(process.argv[1]).version" "$pkg")"
fi
if [[ "$installed" != "$SOLC_VERSION" ]]; then
  command -v npm >/dev/null || { echo "error: npm is required to install solc-js" >&2; exit 1; }
  echo "installing solc-js $SOLC_VERSION into $SOLCJS_DIR" >&2
  mkdir -p "$SOLCJS_DIR"
  npm install --prefix "$SOLCJS_DIR" --no-audit --no-fund --loglevel=error "solc@$SOLC_VERSION" >&2
fi

cd "$SCRIPT_DIR"
SOLC_VERSION="$SOLC_VERSION" node "$SCRIPT_DIR/compile.js" "$SOLCJS_DIR"
