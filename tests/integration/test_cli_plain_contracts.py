"""CLI points probe p21 found: the first `policy apply` prints the diff it applied (from
no version, as `diff` previewed it); a repeated `report usage --month`/`--format` is
refused as the API refuses a repeated parameter, never silently the last one; `usage
--user` prints a subject's control characters escaped; a policy "folder" that is a file
is said to be one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.processes import free_port, run_gateway

EXAMPLE_POLICIES = Path(__file__).resolve().parents[2] / "policies"
NO_REDIS = {"GATEWAY_REDIS_URL": ""}


def test_the_first_apply_prints_the_diff_diff_previewed(tmp_path: Path) -> None:
    folder = tmp_path / "pol"
    shutil.copytree(EXAMPLE_POLICIES, folder)
    assert run_gateway("migrate", cwd=tmp_path).returncode == 0
    preview = run_gateway("policy", "diff", str(folder), cwd=tmp_path)
    assert preview.returncode == 0 and preview.stdout.startswith("--- no version"), preview
    applied = run_gateway("policy", "apply", str(folder), cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith("--- no version\n+++ version 1\n"), applied.stdout
    # The same lines added as the preview showed, then the one-line summary.
    added = [line for line in preview.stdout.splitlines() if line.startswith("+ ")]
    assert added and all(line in applied.stdout.splitlines() for line in added)
    assert applied.stdout.splitlines()[-1].endswith("as policy version 1 (the first version)")


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--month", "2026-12", "--month", "2026-11"), "--month"),
        (("--month", "2026-12", "--format", "json", "--format", "csv"), "--format"),
    ],
)
def test_a_repeated_report_flag_is_refused(
    tmp_path: Path, flags: tuple[str, ...], named: str
) -> None:
    assert run_gateway("migrate", cwd=tmp_path).returncode == 0
    done = run_gateway("report", "usage", *flags, cwd=tmp_path)
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.splitlines()[0] == f"error: {named} is given 2 times: give it once"


def test_one_month_and_the_default_format_still_work(tmp_path: Path) -> None:
    assert run_gateway("migrate", cwd=tmp_path).returncode == 0
    done = run_gateway("report", "usage", "--month", "2026-12", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("month,team,model,requests,")


def test_usage_escapes_a_subjects_control_characters(tmp_path: Path) -> None:
    """A subject holding a newline and an ESC is one header line, shown escaped (the
    server is not running: the ledger's view, with its warning)."""
    folder = tmp_path / "pol"
    shutil.copytree(EXAMPLE_POLICIES, folder)
    assert run_gateway("migrate", cwd=tmp_path).returncode == 0
    assert run_gateway("policy", "apply", str(folder), cwd=tmp_path).returncode == 0
    nowhere = f"http://127.0.0.1:{free_port()}"
    subject = "a\nb at 2026\x1b[2K"
    shown = run_gateway(
        "usage", "demo", "--user", subject, "--server", nowhere, cwd=tmp_path, env=NO_REDIS
    )
    assert shown.returncode == 0, shown.stderr
    first = shown.stdout.splitlines()[0]
    assert first.startswith("usage of demo / user a\\nb at 2026\\x1b[2K at "), first
    assert "\x1b" not in shown.stdout
    assert not shown.stdout.splitlines()[1].startswith("b at")


def test_a_policy_folder_that_is_a_file_is_said_to_be_one(tmp_path: Path) -> None:
    (tmp_path / "bundle.yaml").write_text("teams: {}\n")
    serve = ("serve", "--policies", "bundle.yaml", "--port", str(free_port()))
    for args in (("policy", "check", "bundle.yaml"), serve):
        done = run_gateway(*args, cwd=tmp_path)
        assert done.returncode == 1, done
        assert "bundle.yaml: a file, not a policy directory" in done.stderr.splitlines()[0]
    missing = run_gateway("policy", "check", "nothere", cwd=tmp_path)
    assert "nothere: policy directory not found" in missing.stderr.splitlines()[0]
