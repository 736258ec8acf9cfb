"""The `serve --policies` folder watcher never overwrites an operator's edit (SPEC §4).

The watcher (`gateway/policy/sync.py`) is driven one `check()` at a time over
a real database, so the order of events is the test's, not the poll's.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.policy.service import PolicyService
from gateway.policy.sync import FolderWatcher

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
