"""Version numbers no version can have: in a folder's `.policy-version`, the CLI's
arguments and the admin API's paths (SPEC §4, §5).

The version column is a 32-bit SQL INTEGER in PostgreSQL. A marker naming a larger
number comes from no database at all: it counts as no marker (as another database's
does), and such a number given by a user is an unknown version; neither reaches SQL.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.policy.bundle_text import MARKER_NAME, read_marker
from gateway.policy.service import PolicyService
from gateway.policy.sync import FolderWatcher
from tests.support.processes import run_gateway as run

POLICY = """\
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
teams:
  demo: {models: ["*"]}
"""
WITH_T2 = POLICY + "  t2: {models: [small]}\n"
PAST_INT32 = 2**31


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(POLICY)
    return folder


def _mark_past_int32(folder: Path) -> None:
    (folder / MARKER_NAME).write_text(f"version: {PAST_INT32}\nhash: abc\n")


async def until(condition: Callable[[], object], within_s: float = 6.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not hold in time")


async def test_a_watched_folder_marked_past_int32_is_applied(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """The probe's sequence: an edited folder whose marker names version 2**31 becomes the
    next version, on SQLite and PostgreSQL alike; on PostgreSQL every check of the folder
    failed with 'value out of int32 range' and the edit was never applied."""
    folder = _folder(tmp_path)
    service = PolicyService(engine, os.environ)
    await service.bootstrap(folder)
    _mark_past_int32(folder)
    (folder / "bundle.yaml").write_text(WITH_T2)
    watcher = FolderWatcher(service, folder, interval_s=0.05, settle_s=0)
    task = asyncio.create_task(watcher.run())
    try:
        await until(lambda: getattr(read_marker(folder), "version", None) == 2)
        running = await service.current()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert running is not None and running.version == 2
    assert sorted(running.bundle["teams"]) == ["demo", "t2"]


async def test_a_folder_marked_past_int32_has_an_unknown_base(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """`policy diff` previews such a folder as one without a marker: the diff, its base the
    newest version made from it; no database error."""
    folder = _folder(tmp_path)
    service = PolicyService(engine, os.environ)
    await service.bootstrap(folder)
    _mark_past_int32(folder)
    (folder / "bundle.yaml").write_text(WITH_T2)

    assert await service.marked_version(read_marker(folder)) is None
    plan = await service.plan_folder(folder)
    assert plan.base == 1 and plan.conflict is None and "+  t2:" in plan.diff


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment on an empty, migrated database (SQLite, then PostgreSQL)."""
    env = {"GATEWAY_DATABASE_URL": database_url}
    migrated = run("migrate", cwd=tmp_path, env=env)
    assert migrated.returncode == 0, migrated.stderr
    return env


def test_cli_diff_and_apply_of_a_folder_marked_past_int32(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """`policy diff` and `policy apply` treat the marker as no marker; on PostgreSQL they
    printed a raw SQL error and exited 1."""
    folder = _folder(tmp_path)
    first = run("policy", "apply", str(folder), cwd=tmp_path, env=cli_env)
    assert first.returncode == 0, first.stderr
    _mark_past_int32(folder)
    (folder / "bundle.yaml").write_text(WITH_T2 + "  t3: {models: [small]}\n")

    diff = run("policy", "diff", str(folder), cwd=tmp_path, env=cli_env)
    assert diff.returncode == 0, diff.stderr
    assert "+  t3:" in diff.stdout
    applied = run("policy", "apply", str(folder), cwd=tmp_path, env=cli_env)
    assert applied.returncode == 0, applied.stderr
    marker = read_marker(folder)
    assert marker is not None and marker.version != PAST_INT32
    assert "int32" not in diff.stderr + applied.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("policy", "rollback", str(PAST_INT32)),
        ("policy", "export", "out", "--version", str(PAST_INT32)),
    ],
)
def test_cli_version_arguments_past_int32_are_unknown_versions(
    tmp_path: Path, cli_env: dict[str, str], command: tuple[str, ...]
) -> None:
    """A version number past int32 given to the CLI is 'no such version', not an SQL dump."""
    folder = _folder(tmp_path)
    assert run("policy", "apply", str(folder), cwd=tmp_path, env=cli_env).returncode == 0
    done = run(*command, cwd=tmp_path, env=cli_env)
    assert done.returncode == 1
    assert f"There is no policy version {PAST_INT32}." in done.stderr
    assert "int32" not in done.stderr and "Traceback" not in done.stderr


def test_cli_history_limit_past_bigint_lists_every_version(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """`policy history --limit 10**20` lists every version; it printed a raw SQL error
    (the limit overflowed PostgreSQL's BIGINT)."""
    folder = _folder(tmp_path)
    assert run("policy", "apply", str(folder), cwd=tmp_path, env=cli_env).returncode == 0
    done = run("policy", "history", "--limit", str(10**20), cwd=tmp_path, env=cli_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("1 ")


async def test_a_refusal_names_a_marker_past_int32_as_impossible(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """After a rollback, such a folder is refused as one of unknown base, and the refusal
    says its marker's number is past any version, not 'another database's version'."""
    folder = _folder(tmp_path)
    service = PolicyService(engine, os.environ)
    await service.bootstrap(folder)
    (folder / "bundle.yaml").write_text(WITH_T2)
    await service.apply_folder(folder, author="cli", reason="")
    await service.rollback(1, author="admin", reason="t2 was a mistake")
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "bundle.yaml").write_text(WITH_T2 + "  t3: {models: [small]}\n")
    _mark_past_int32(other)

    plan = await service.plan_folder(other)

    assert plan.conflict is not None
    assert f"names version {PAST_INT32}, past any version a database can hold" in (
        plan.conflict.message
    )
