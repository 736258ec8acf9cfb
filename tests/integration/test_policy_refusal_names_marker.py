"""A folder apply refused over an unseen change names the version the folder's
`.policy-version` says, and the identical later version its files were matched to."""

from __future__ import annotations

from pathlib import Path

from tests.support.admin import ADMIN_POLICY
from tests.support.processes import run_gateway


def test_refusal_names_the_exported_version_and_the_identical_later_one(tmp_path: Path) -> None:
    """Export version 1 after a rollback to 1 (version 3) and a rollback to 2 (version 4):
    `apply` and `diff` say "based on version 1 (its .policy-version), identical to the
    later version 3", never "based on version 3"."""
    env = {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db"}

    def gateway(*args: str) -> str:
        done = run_gateway(*args, cwd=tmp_path, env=env)
        assert done.returncode == 0, (args, done.stderr)
        return done.stderr

    first, second = tmp_path / "first", tmp_path / "second"
    for folder, text in ((first, ADMIN_POLICY), (second, ADMIN_POLICY.replace("large]", "]"))):
        folder.mkdir()
        (folder / "bundle.yaml").write_text(text)
    gateway("migrate")
    gateway("policy", "apply", str(first))  # version 1
    gateway("policy", "apply", str(second))  # version 2
    gateway("policy", "rollback", "1")  # version 3, equal to 1
    gateway("policy", "rollback", "2")  # version 4, equal to 2: unseen by a copy of 1
    gateway("policy", "export", "exp_v1", "--version", "1")
    assert "version: 1" in (tmp_path / "exp_v1" / ".policy-version").read_text()

    refused = run_gateway("policy", "apply", "exp_v1", cwd=tmp_path, env=env)
    assert refused.returncode == 1, refused.stderr
    said = "exp_v1 is based on version 1 (its .policy-version), identical to the later version 3"
    assert said in refused.stderr, refused.stderr
    assert "based on version 3" not in refused.stderr
    assert "(version 4)" in refused.stderr  # the rollback it has not seen

    previewed = run_gateway("policy", "diff", "exp_v1", cwd=tmp_path, env=env)
    assert previewed.returncode == 0, previewed.stderr
    assert said in previewed.stderr, previewed.stderr
