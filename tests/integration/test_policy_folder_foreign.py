"""A policy folder whose `.policy-version` comes from another database (SPEC §4).

A folder exported from, or applied against, another database names a version
this one does not hold (or holds with other content). Its base is then unknown,
as if it had no marker: `serve --policies` applies its edits, or refuses them
with a reason, and never stalls.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import create_engine, migrate
from gateway.policy.bundle_text import read_marker
from gateway.policy.service import PolicyConflict, PolicyService
from gateway.policy.sync import FolderWatcher
from tests.support.gateway import running_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
teams:
  demo: {models: ["*"]}
"""
WITH_T2 = POLICY + "  t2: {models: [small]}\n"
WITH_T3 = WITH_T2 + "  t3: {models: [small]}\n"


async def _database(tmp_path: Path, name: str, folder: Path, *edits: str) -> None:
    """A migrated SQLite database bootstrapped from `folder`, then each edit applied."""
    url = f"sqlite+aiosqlite:///{tmp_path / name}"
    await migrate(url)
    engine = create_engine(url)
    try:
        service = PolicyService(engine, os.environ)
        await service.bootstrap(folder)
        for text in edits:
            (folder / "bundle.yaml").write_text(text)
            await service.apply_folder(folder, author="cli", reason="")
    finally:
        await engine.dispose()


def _folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "bundle.yaml").write_text(POLICY)
    return folder


async def until(condition: Callable[[], object], within_s: float = 6.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not hold in time")


async def test_a_watched_folder_marked_by_another_database_is_applied_then_followed(
    tmp_path: Path,
) -> None:
    """The probe's sequence: a folder at version 2 of database A, served on B (version 1
    only). Its content becomes B's version 2, and a later edit version 3; the watcher
    stalled on `There is no policy version 2.` and applied neither."""
    folder = _folder(tmp_path, "policies")
    await _database(tmp_path, "a.db", folder, WITH_T2)
    assert read_marker(folder).version == 2  # type: ignore[union-attr]
    await _database(tmp_path, "gateway.db", _folder(tmp_path, "f0"))  # B: version 1

    async with running_gateway(tmp_path, WITH_T2) as gw:  # the folder keeps A's marker
        service = gw.services.policy_versions
        await until(lambda: gw.services.policy.version == 2)
        (folder / "bundle.yaml").write_text(WITH_T3)
        await until(lambda: gw.services.policy.version == 3)
        await until(lambda: service.folder_status() is None)
        running = await service.current()
    assert running is not None
    assert sorted(running.bundle["teams"]) == ["demo", "t2", "t3"]
    marker = read_marker(folder)
    assert marker is not None and (marker.version, marker.hash) == (3, running.hash)


async def test_a_marker_naming_another_databases_version_does_not_pass_a_rollback(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """A folder at A's version 3 is not based on B's version 3 (a rollback): `policy apply`
    refuses it as a folder of unknown base, saying why; it used to undo the rollback."""
    folder = _folder(tmp_path, "from-a")
    await _database(tmp_path, "a.db", folder, WITH_T2, WITH_T3)
    service = PolicyService(engine, os.environ)
    own = _folder(tmp_path, "own")
    await service.bootstrap(own)
    (own / "bundle.yaml").write_text(WITH_T2)
    await service.apply_folder(own, author="cli", reason="")
    await service.rollback(1, author="admin", reason="t2 was a mistake")

    plan = await service.plan_folder(folder)
    with pytest.raises(PolicyConflict) as refused:
        await service.apply_folder(folder, author="cli", reason="")

    assert plan.base is None and plan.conflict is not None
    assert "names version 3, which is not this database's version 3" in refused.value.message
    assert f"gateway policy apply {folder} --force" in refused.value.message
    running = await service.current()
    assert running is not None and running.version == 3
    assert sorted(running.bundle["teams"]) == ["demo"]


async def test_a_folder_check_that_keeps_failing_is_shown_with_its_error(tmp_path: Path) -> None:
    """While every check of the folder fails, its status (GET /admin/policy's `folder`)
    says so and why; it said nothing, or that the folder would be up to date in seconds."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'not-migrated.db'}")
    watcher = FolderWatcher(
        PolicyService(engine, os.environ), _folder(tmp_path, "pol"), interval_s=0.05, settle_s=0
    )
    task = asyncio.create_task(watcher.run())
    try:
        await until(lambda: watcher.status() is not None)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.dispose()
    status = watcher.status()
    assert status is not None and status["up_to_date"] is False
    assert status["problem"].startswith("checking the folder failed (OperationalError: ")
