#!/usr/bin/env bash
# The whole test suite from a clean clone: install into .venv, bring up
# PostgreSQL and Redis (scripts/services.sh), run pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
bash scripts/services.sh
exec .venv/bin/python -m pytest "$@"
