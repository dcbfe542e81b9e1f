#!/usr/bin/env bash
# The test suite: formatting, lints, then every test (unit and end-to-end) with cargo-nextest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
scripts/setup-k8s.sh
source scripts/env.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# End-to-end tests start the node binary as a process.
cargo build --workspace --bins --quiet
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
