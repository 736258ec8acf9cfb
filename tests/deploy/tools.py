"""Where the deploy checks' tools are: on PATH, or in ./.tools (scripts/deploy-tools.sh).

Missing, a check is skipped with the reason; under CI=true (scripts/check.sh installs
them first) a missing tool fails the check instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(name: str) -> str:
    """The path of `name`; skip (fail under CI) when it is not installed."""
    for candidate in (
        shutil.which(name),
        str(Path(sys.executable).with_name(name)),
        str(ROOT / ".tools" / "bin" / name),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = f"{name} is not installed: run scripts/deploy-tools.sh"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
