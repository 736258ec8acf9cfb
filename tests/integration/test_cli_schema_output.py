"""CLI commands that write files say plainly when they cannot: one line, exit 1, no traceback.

As `report usage -o` does: `error: cannot write PATH: why`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import run_gateway as run

REPO = Path(__file__).resolve().parents[2]


def _refused(ran: subprocess.CompletedProcess[str], target: str) -> None:
    assert ran.returncode == 1, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {target}"), lines
    assert ran.stdout == ""


@pytest.mark.parametrize("where", ["missing/x.json", "a-file/x.json"])
def test_policy_schema_to_a_path_it_cannot_write_is_one_line(tmp_path: Path, where: str) -> None:
    """`policy schema -o` into a missing folder or under a file: one error line (a folder
    itself gets policy.schema.json: test_cli_schema_into_folder.py)."""
    (tmp_path / "a-file").write_text("")
    ran = run("policy", "schema", "-o", where, cwd=tmp_path)
    _refused(ran, where)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing left behind


def test_policy_schema_writes_the_file(tmp_path: Path) -> None:
    """`policy schema -o FILE` still writes the schema and says so."""
    ran = run("policy", "schema", "-o", "policy.schema.json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "$schema" in json.loads((tmp_path / "policy.schema.json").read_text())


def test_policy_export_to_a_folder_it_cannot_make_is_one_line(tmp_path: Path) -> None:
    """`policy export` under a file: one error line naming the path, not a database error."""
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    assert run("migrate", cwd=tmp_path).returncode == 0
    applied = run("policy", "apply", "policies", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    (tmp_path / "a-file").write_text("")

    ran = run("policy", "export", "a-file/out", cwd=tmp_path)

    _refused(ran, "a-file/out: Not a directory")
