#!/usr/bin/env bash
# Prepares the Kubernetes end-to-end tests (tests/tests/k8s_*.rs, run as root): kubectl on the
# PATH, and the control plane's binaries, built once by shared/k8s/control-plane.sh (its build
# needs rsync, which scripts/setup.sh installs) and cached outside the clone.
set -euo pipefail
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
