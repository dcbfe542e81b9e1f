# Sourced by the scripts: one persistent target directory outside the clone, so rebuilds and CI
# reuse what was compiled before.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bcos/target}"
