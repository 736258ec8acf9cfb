"""The `serve --policies` folder watcher never overwrites an operator's edit (SPEC §4).

The watcher (`gateway/policy/sync.py`) is driven one `check()` at a time over
a real database, so the order of events is the test's, not the poll's.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.policy.bundle_text import read_marker
from gateway.policy.service import PolicyService
from gateway.policy.sync import FolderWatcher
from tests.support.gateway import running_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
teams:
  demo: {models: ["*"]}
  search: {models: [small]}
"""
EDITED = POLICY.replace('demo: {models: ["*"]}', "demo: {models: [small]}")


async def test_a_revert_after_a_forced_apply_is_an_edit_not_a_stale_copy(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """`apply --force` moves the folder's marker; reverting the files then is applied, not undone."""
    service = PolicyService(engine, os.environ)
    folder = tmp_path / "pol"
    folder.mkdir()
    bundle = folder / "bundle.yaml"
    bundle.write_text(POLICY)
    first = (await service.bootstrap(folder)).version
    watcher = FolderWatcher(service, folder)
    await watcher.check()  # in sync at version 1
    await service.patch_team(
        "search", {"limits": {"rpm": 7}}, author="api", reason="", base_version=1
    )
    bundle.write_text(EDITED)
    await watcher.check()  # refused: the folder has not seen version 2
    assert (await service.current()).version == 2  # type: ignore[union-attr]
    forced = await service.apply_folder(folder, author="cli", reason="", force=True)
    assert forced.version.version == 3
    bundle.write_text(POLICY)  # reverted before the watcher looked again

    await watcher.check()

    assert bundle.read_text() == POLICY  # the operator's revert is still there
    running = await service.current()
    assert running is not None and running.version == 4
    assert running.hash == first.hash


async def test_a_serving_replica_applies_a_revert_made_right_after_a_forced_apply(
    tmp_path: Path,
) -> None:
    """The probe's sequence against `serve`: the revert becomes a version; the files stay."""
    async with running_gateway(tmp_path, POLICY) as gw:
        other = PolicyService(gw.services.engine, os.environ)  # another replica, or the CLI
        folder = gw.settings.policy_dir
        bundle = folder / "bundle.yaml"
        first = await other.current()
        assert first is not None and first.version == 1
        await other.patch_team(
            "search", {"limits": {"rpm": 7}}, author="api", reason="", base_version=1
        )
        # The watcher brings the unedited folder up to version 2 first.
        await until(lambda: "rpm: 7" in bundle.read_text())
        before_edit = bundle.read_text()
        await other.patch_team(
            "search", {"limits": {"rpm": 8}}, author="api", reason="", base_version=2
        )
        bundle.write_text(before_edit.replace("- '*'", "- small"))  # an edit on version 2
        await until(lambda: gw.services.policy_versions.folder_status() is not None)
        forced = await other.apply_folder(folder, author="cli", reason="", force=True)
        bundle.write_text(before_edit)  # at once: the watcher sees marker and revert together
        await asyncio.sleep(3)  # a poll, its settle time and an apply
        running = await other.current()
    assert forced.version.version == 4
    assert bundle.read_text() == before_edit  # never overwritten
    assert running is not None and running.version == 5
    assert running.bundle["teams"]["search"]["limits"] == {"rpm": 7}


async def until(condition: Callable[[], object], within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not hold in time")


async def test_a_folder_whose_content_a_later_version_equals_is_marked_with_it(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """The folder brought to version 2 (its marker says 2); then version 3 and a rollback
    to 2 (version 4, the same content as 2), both before the watcher looked again: the
    folder holds version 4's content, so nothing is rewritten, but its marker must say 4.
    It kept saying 2: GET /admin/policy never saw the folder brought to the running
    version (CI waited in vain), and after a restart the folder's next edit was refused
    as based on version 2, behind a rollback it had not seen."""
    service = PolicyService(engine, os.environ)
    folder = tmp_path / "pol"
    folder.mkdir()
    bundle = folder / "bundle.yaml"
    bundle.write_text(POLICY)
    await service.bootstrap(folder)
    watcher = FolderWatcher(service, folder)
    await watcher.check()  # in sync at version 1
    await service.patch_team(
        "search", {"limits": {"rpm": 7}}, author="api", reason="", base_version=1
    )
    await watcher.check()  # rewritten to version 2
    at_two = bundle.read_text()
    assert read_marker(folder) is not None and read_marker(folder).version == 2  # type: ignore[union-attr]
    await service.patch_team(
        "search", {"limits": {"rpm": 8}}, author="api", reason="", base_version=2
    )
    await service.rollback(2, author="api", reason="undo")

    await watcher.check()

    assert bundle.read_text() == at_two
    marker = read_marker(folder)
    assert marker is not None and marker.version == 4
    restarted = FolderWatcher(service, folder)
    await restarted.check()
    bundle.write_text(at_two.replace("- '*'", "- small"))  # the operator's next edit
    await restarted.check()
    running = await service.current()
    assert running is not None and running.version == 5  # applied, not refused
