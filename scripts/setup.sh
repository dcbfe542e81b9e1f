#!/usr/bin/env bash
# Installs what building bcos needs beyond the Rust toolchain: Debian's RocksDB (linked instead of
# compiling RocksDB's C++), libclang (bindgen for librocksdb-sys) and protoc (gRPC code generation).
# For the Kubernetes end-to-end tests (tests/tests/k8s_*.rs, run as root): iproute2 for the pod
# runner's network namespaces, kubectl, and the control plane's binaries, built once by
# shared/k8s/control-plane.sh (whose build needs rsync) and cached.
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
if ! command -v kubectl >/dev/null; then
  echo "setup: kubectl not found; the k8s_* tests run it (any recent kubectl on the PATH)" >&2
  exit 1
fi
shared=${BCOS_SHARED_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
if [[ ! -x $shared/k8s/control-plane.sh ]]; then
  echo "setup: $shared/k8s/control-plane.sh not found; set BCOS_SHARED_DIR to the folder holding k8s/" >&2
  exit 1
fi
# Builds kube-apiserver and kube-controller-manager once (10-20 min on 2 cores); cached afterwards.
"$shared/k8s/control-plane.sh" build
