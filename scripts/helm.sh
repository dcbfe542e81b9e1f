#!/usr/bin/env bash
# Helm without a helm binary: the PyPI package helm-python-sdk embeds Helm's Go SDK as a shared
# library (libhelm_c, called through ctypes) and works offline once installed, but ships no `helm`
# executable. This script is that executable for what the repository needs, with helm's own flags
# and output:
#
#   scripts/helm.sh lint CHART [--strict] [-n NS] [-f VALUES.yaml]... [--set K=V]... [--set-string K=V]...
#   scripts/helm.sh template [NAME] CHART [-n NS] [--include-crds] [-f ...] [--set ...] [--set-string ...]
#   scripts/helm.sh version
#
# The package is installed once into a virtualenv under ${BCOS_CACHE:-$HOME/.cache/bcos}/helm-venv.
set -euo pipefail

sdk_version=0.2.2
venv="${BCOS_CACHE:-$HOME/.cache/bcos}/helm-venv"
ready="$venv/.helm-python-sdk-$sdk_version"

if [[ ! -e $ready ]]; then
  mkdir -p "$(dirname "$venv")"
  # Tests run in parallel: the first run installs while the others wait, instead of all of them
  # writing one virtualenv at once.
  exec 9>"$venv.lock"
  flock 9
  if [[ ! -e $ready ]]; then
    # Debian's python3 makes virtualenvs only with python3-venv (ensurepip) installed.
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
      echo "helm.sh: installing python3-venv" >&2
      sudo=""
      [[ $(id -u) -eq 0 ]] || sudo="sudo"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    fi
    echo "helm.sh: installing helm-python-sdk $sdk_version into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "helm-python-sdk==$sdk_version" >&2
    touch "$ready"
  fi
  exec 9>&-
fi

exec "$venv/bin/python" - "$@" <<'PY'
"""helm lint, helm template and helm version over helm_python (see scripts/helm.sh)."""

import argparse
import re
import sys

import helm_python as helm

# Helm's install order (pkg/release/util/kind_sorter.go): `helm template` prints manifests in the
# order `helm install` creates them, so the output can be applied as it is. Unknown kinds go last.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]
SEVERITIES = {1: "INFO", 2: "WARNING", 3: "ERROR"}
# Helm's document separator (pkg/release/util/manifest.go).
SEPARATOR = re.compile(r"(?:^|\s*\n)---\s*")


def merge(into, values):
    """Deep-merges values into into; later values win, as with helm's repeated -f and --set."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
    return into


def user_values(args):
    """The values of -f files, then --set, then --set-string: helm's precedence."""
    values = {}
    for path in args.values:
        with open(path, encoding="utf-8") as file:
            merge(values, helm.values_from_yaml(file.read()))
    for expression in args.set:
        merge(values, helm.parse_set_string(expression))
    for expression in args.set_string:
        merge(values, helm.parse_set_string_values(expression))
    return values


def lint(args):
    report = helm.lint(args.chart, user_values(args), strict=args.strict, namespace=args.namespace)
    print(f"==> Linting {args.chart}")
    failing = 2 if args.strict else 3
    failed = bool(report["errors"])
    for message in report["messages"]:
        severity = message["severity"]
        failed |= severity >= failing
        print(f"[{SEVERITIES.get(severity, 'UNKNOWN')}] {message['path']}: {message['error']}")
    # The report's errors repeat the messages that failed the chart; print only the others
    # (such as a chart that does not load).
    reported = {message["error"] for message in report["messages"]}
    for error in report["errors"]:
        if error not in reported:
            print(f"[ERROR] {error}")
    print()
    summary = f"{report['total_charts_linted']} chart(s) linted, {int(failed)} chart(s) failed"
    if failed:
        print(f"Error: {summary}", file=sys.stderr)
        return 1
    print(summary)
    return 0


def documents(source, text):
    """The non-empty YAML documents of one rendered file, each with its kind's install rank."""
    for document in SEPARATOR.split(text.strip()):
        document = document.strip()
        parsed = helm.values_from_yaml(document) if document else {}
        if parsed:
            kind = parsed.get("kind", "")
            rank = INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)
            yield rank, source, document


def template(args):
    if args.chart is None:
        args.name, args.chart = "release-name", args.name
    helm.validate_release_name(args.name)
    with helm.Chart.load(args.chart) as chart:
        if args.include_crds:
            # helm install creates crds/ before anything else and never templates them.
            for crd in chart.crds:
                print(f"---\n# Source: {crd['filename']}\n{crd['data'].strip()}")
        rendered = chart.render(user_values(args), name=args.name, namespace=args.namespace,
                                is_install=True)
    manifests = []
    for source, text in rendered.items():
        if source.endswith("NOTES.txt"):
            continue
        manifests.extend(documents(source, text))
    for _, source, document in sorted(manifests, key=lambda m: (m[0], m[1])):
        print(f"---\n# Source: {source}\n{document}")
    return 0


def version(_args):
    print(f"version.BuildInfo{{Version:\"{helm.helm_sdk_version()}\", "
          f"helm-python-sdk:\"{helm.__version__}\", libhelm_c:\"{helm.helm_c_version()}\"}}")
    return 0


def main():
    parser = argparse.ArgumentParser(prog="helm.sh")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_values(command):
        command.add_argument("-n", "--namespace", default="default")
        command.add_argument("-f", "--values", action="append", default=[])
        command.add_argument("--set", action="append", default=[])
        command.add_argument("--set-string", action="append", default=[])
        return command

    linter = with_values(commands.add_parser("lint"))
    linter.add_argument("chart")
    linter.add_argument("--strict", action="store_true")
    linter.set_defaults(run=lint)

    templater = with_values(commands.add_parser("template"))
    templater.add_argument("name")
    templater.add_argument("chart", nargs="?")
    templater.add_argument("--include-crds", action="store_true")
    templater.set_defaults(run=template)

    commands.add_parser("version").set_defaults(run=version)

    args = parser.parse_args()
    try:
        return args.run(args)
    except (helm.HelmError, OSError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1


sys.exit(main())
PY
