"""An edit of the watched folder made while the gateway was stopped is applied at start,
even when it sets the files back to an older version (probe E, F1): the marker says what
the folder has seen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from gateway.policy import bundle_text
from tests.support.gateway import RunningGateway, running_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
teams:
  demo: {models: ["*"]}
"""
WITH_OPS = POLICY + "  ops: {models: [small]}\n"


async def newest(gw: RunningGateway, version: int) -> None:
    for _ in range(60):
        running = await gw.services.policy_versions.current()
        marker = bundle_text.read_marker(gw.settings.policy_dir)
        if (
            running is not None
            and running.version == version
            and marker == bundle_text.Marker(version, running.hash)
        ):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"version {version} was not reached and marked")


async def test_a_team_removed_while_stopped_is_removed_at_start(tmp_path: Path) -> None:
    """Undoing an added team while stopped makes a new version without it; nothing is rewritten."""
    async with running_gateway(tmp_path, POLICY) as gw:
        (gw.settings.policy_dir / "bundle.yaml").write_text(WITH_OPS)
        await newest(gw, 2)
    async with running_gateway(tmp_path, POLICY) as gw:  # the files are version 1's again
        await asyncio.sleep(3)  # the first look happens at once, a rewrite within 2 s
        running = await gw.services.policy_versions.current()
        text = (gw.settings.policy_dir / "bundle.yaml").read_text()
    assert running is not None and running.version == 3
    assert "ops" not in running.bundle["teams"]
    assert "ops" not in text
    assert gw.services.policy.version == 3


async def test_an_old_copy_under_a_newer_marker_does_not_undo_an_api_change(
    tmp_path: Path,
) -> None:
    """Files equal to the version before an admin-API change are refused at start, not
    applied (it may be an old copy) and not overwritten (it may be an edit)."""
    async with running_gateway(tmp_path, POLICY) as gw:
        token = await gw.token(team="demo", scopes=["gateway:admin"])
        async with aiohttp.ClientSession() as http:
            async with http.patch(
                f"{gw.origin}/admin/teams/demo",
                json={"changes": {"limits": {"rpm": 7}}, "base_version": 1},
                headers={"authorization": f"Bearer {token}"},
            ) as response:
                assert response.status == 200, await response.text()
        await newest(gw, 2)  # the watcher wrote version 2 into the folder
    async with running_gateway(tmp_path, POLICY) as gw:
        token = await gw.token(team="demo", scopes=["gateway:admin"])
        await asyncio.sleep(3)
        running = await gw.services.policy_versions.current()
        text = (gw.settings.policy_dir / "bundle.yaml").read_text()
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{gw.origin}/admin/policy", headers={"authorization": f"Bearer {token}"}
            ) as response:
                body = await response.json()
    assert running is not None and running.version == 2
    assert running.bundle["teams"]["demo"]["limits"] == {"rpm": 7}
    assert text == POLICY
    assert "although it was exported at version 2" in body["folder"]["problem"]
