#!/usr/bin/env bash
# The one check, from a clean clone, the same for developers and CI (.ci/run):
# install into .venv, lint (ruff check), format (ruff format --check), types
# (mypy strict), then bring up PostgreSQL and Redis (scripts/services.sh), bring
# helm and checkov (scripts/deploy-tools.sh) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"

echo "check: ruff check" >&2
.venv/bin/ruff check .
echo "check: ruff format --check" >&2
.venv/bin/ruff format --check .
echo "check: mypy" >&2
.venv/bin/mypy

bash scripts/services.sh
bash scripts/deploy-tools.sh  # helm and checkov for tests/deploy/
echo "check: pytest" >&2
exec .venv/bin/python -m pytest "$@"
