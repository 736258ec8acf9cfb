"""A replica that cannot enforce the newest policy version is not ready (SPEC §4, §7).

The gateway enforces one version, the same on every replica: a replica left on
an older one must leave the load balancer's rotation until it catches up. The
other replica is a `PolicyService` with its own environment on the same database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.policy.service import PolicyService
from tests.support.gateway import RunningGateway, running_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
teams:
  demo: {models: ["*"]}
"""
BUNDLE: dict[str, Any] = {
    "providers": {"demo": {"type": "mock"}},
    "models": {"small": {"deployments": [{"provider": "demo", "model": "mock-small"}]}},
    "teams": {"demo": {"models": ["*"]}},
}
NEEDS_KEY: dict[str, Any] = {
    **BUNDLE,
    "providers": {**BUNDLE["providers"], "pp": {"type": "openai", "api_key": "${PP_API_KEY}"}},
}


async def readiness(gw: RunningGateway) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{gw.origin}/readyz") as response:
        return response.status, await response.json()


async def until_enforced(gw: RunningGateway, version: int) -> None:
    for _ in range(100):
        if gw.services.policy.version == version:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"version {version} was not enforced within 5 s")


async def test_a_replica_that_cannot_enforce_the_newest_version_is_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 2 needs an env var this replica lacks: /readyz 503 naming it; version 3 heals."""
    monkeypatch.delenv("PP_API_KEY", raising=False)
    async with running_gateway(tmp_path, POLICY) as gw:
        other = PolicyService(gw.services.engine, {"PP_API_KEY": "x"})
        await other.apply(NEEDS_KEY, author="b", reason="", base_version=1)
        for _ in range(100):  # the poll tries version 2 within a second
            status, body = await readiness(gw)
            if status != 200:
                break
            await asyncio.sleep(0.05)
        assert status == 503, body
        assert body["status"] == "not_ready"
        assert body["checks"]["policy"].startswith("version 2 cannot be enforced here: ")
        assert "PP_API_KEY" in body["checks"]["policy"]
        assert gw.services.policy.version == 1  # the older version stays in force meanwhile

        await other.apply(BUNDLE, author="b", reason="", base_version=2)
        await until_enforced(gw, 3)
        status, body = await readiness(gw)
    assert status == 200, body
    assert body["checks"]["policy"] == "ok"


async def test_the_served_folder_follows_again_once_a_version_it_can_load_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder rewritten to version 2 (unloadable here) is brought up to version 3 after."""
    monkeypatch.delenv("PP_API_KEY", raising=False)
    async with running_gateway(tmp_path, POLICY) as gw:
        bundle = gw.settings.policy_dir / "bundle.yaml"
        other = PolicyService(gw.services.engine, {"PP_API_KEY": "x"})
        await other.apply(NEEDS_KEY, author="b", reason="", base_version=1)
        for _ in range(100):
            if "PP_API_KEY" in bundle.read_text():
                break
            await asyncio.sleep(0.05)
        assert "PP_API_KEY" in bundle.read_text()
        await other.apply(BUNDLE, author="b", reason="", base_version=2)
        await until_enforced(gw, 3)
        # The watcher writes the files (on a thread), then records what they hold: wait
        # for both, or a read between the two sees the new files and the old status.
        for _ in range(100):
            folder = gw.services.policy_versions.folder_status()
            if "PP_API_KEY" not in bundle.read_text() and folder is None:
                break
            await asyncio.sleep(0.05)
        running = await other.current()
    assert "PP_API_KEY" not in bundle.read_text()
    assert folder is None, folder
    assert running is not None and running.version == 3  # no version made from the folder
