"""An edit of the `serve --policies` folder that becomes a version logs `policy check`'s
warnings, as `policy apply` prints them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
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
"""
WITH_USD_BUDGET = POLICY.replace(
    'demo: {models: ["*"]}', 'demo: {models: ["*"], budgets: [{period: month, usd: 5}]}'
)


async def test_a_folder_edit_logs_checks_warnings(
    engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A USD budget added over an unpriced model: the new version is applied and a
    warning naming the team and model is logged."""
    service = PolicyService(engine, os.environ)
    folder = tmp_path / "pol"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(POLICY)
    await service.bootstrap(folder)
    watcher = FolderWatcher(service, folder)
    await watcher.check()
    (folder / "bundle.yaml").write_text(WITH_USD_BUDGET)

    with caplog.at_level(logging.WARNING):
        await watcher.check()

    running = await service.current()
    assert running is not None and running.version == 2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith("policy version 2: team 'demo' has a USD budget, but model 'small'")
        for m in warned
    ), warned
