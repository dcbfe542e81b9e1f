#!/usr/bin/env bash
# Installs what building bcos needs beyond the Rust toolchain: Debian's RocksDB (linked instead of
# compiling RocksDB's C++), libclang (bindgen for librocksdb-sys) and protoc (gRPC code generation).
# rsync and iproute2 serve the Kubernetes tests (scripts/setup-k8s.sh).
# Idempotent and quiet when everything is present.
set -euo pipefail

packages=(librocksdb-dev libclang-dev protobuf-compiler rsync iproute2)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
