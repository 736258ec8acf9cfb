"""`gateway policy diff DIR --exit-code` tells CI whether the folder differs from the
running version, as `git diff --exit-code` does; without the flag it exits 0 either way."""

from __future__ import annotations

from pathlib import Path

from tests.support.admin import ADMIN_POLICY
from tests.support.processes import run_gateway


def test_diff_exit_code_is_1_with_changes_and_0_without(tmp_path: Path) -> None:
    """Same folder: 0 ("no changes"); an edited one: 1 with the diff on stdout; without
    --exit-code: 0 for both."""
    env = {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db"}
    same, edited = tmp_path / "same", tmp_path / "edited"
    for folder, text in ((same, ADMIN_POLICY), (edited, ADMIN_POLICY.replace("large]", "]"))):
        folder.mkdir()
        (folder / "bundle.yaml").write_text(text)
    assert run_gateway("migrate", cwd=tmp_path, env=env).returncode == 0
    assert run_gateway("policy", "apply", str(same), cwd=tmp_path, env=env).returncode == 0

    unchanged = run_gateway("policy", "diff", str(same), "--exit-code", cwd=tmp_path, env=env)
    assert unchanged.returncode == 0, unchanged.stderr
    assert unchanged.stdout.startswith("no changes")

    changed = run_gateway("policy", "diff", str(edited), "--exit-code", cwd=tmp_path, env=env)
    assert changed.returncode == 1, changed.stderr
    assert changed.stdout.startswith("--- version 1 (running)"), changed.stdout
    assert "large" in changed.stdout
    assert "error" not in changed.stderr

    for folder in (same, edited):
        plain = run_gateway("policy", "diff", str(folder), cwd=tmp_path, env=env)
        assert plain.returncode == 0, plain.stderr
