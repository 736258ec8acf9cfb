"""`policy schema -o DIR` writes policy.schema.json into an existing folder; an `-o` that
names no file (empty, or a folder that is not there) is one `error:` line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import run_gateway as run


@pytest.mark.parametrize("folder", ["out", "out/", "."])
def test_policy_schema_into_a_folder_writes_its_usual_file(tmp_path: Path, folder: str) -> None:
    """`-o out`, `-o out/` or `-o .`: the folder gets policy.schema.json, as stdout prints it."""
    (tmp_path / "out").mkdir()
    printed = run("policy", "schema", cwd=tmp_path)
    ran = run("policy", "schema", "-o", folder, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    written = tmp_path / folder / "policy.schema.json"
    assert written.read_text() == printed.stdout
    assert ran.stderr.strip() == f"wrote {Path(folder) / 'policy.schema.json'}"


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("missing/", "error: -o missing/: no folder missing/"),
        ("a-file/", "error: -o a-file/: a-file/ is not a folder"),
        ("", "error: -o needs a path"),
    ],
)
def test_policy_schema_to_no_file_is_a_usage_error(tmp_path: Path, written: str, says: str) -> None:
    """A trailing slash on no folder (not a file named so), or an empty -o: exit 2, one line."""
    (tmp_path / "a-file").write_text("kept")
    ran = run("policy", "schema", "-o", written, cwd=tmp_path)
    assert ran.returncode == 2, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(says), lines
    assert ran.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    assert (tmp_path / "a-file").read_text() == "kept"


def test_report_usage_to_a_folder_that_is_not_there_is_a_usage_error(tmp_path: Path) -> None:
    """`report usage -o missing/` is refused as `policy schema`'s is, before the database."""
    ran = run("report", "usage", "--month", "2026-01", "-o", "missing/", cwd=tmp_path)
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.strip() == "error: -o missing/: no folder missing/"
    assert list(tmp_path.iterdir()) == []
