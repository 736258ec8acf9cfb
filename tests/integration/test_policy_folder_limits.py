"""What the admin API takes, a policy folder can hold: export, check and apply round-trip,
and a folder `serve --policies` keeps is never left invalid by the gateway's own rewrite."""

from __future__ import annotations

import asyncio
import copy
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.policy.loader import MAX_NODES, load_bundle
from tests.support.admin import ADMIN_POLICY, Admin
from tests.support.gateway import RunningGateway, running_gateway


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ADMIN_POLICY) as gateway:
        yield gateway


@pytest.fixture
async def admin(gw: RunningGateway, http: aiohttp.ClientSession) -> Admin:
    token = await gw.token(team="demo", scopes=["gateway:admin"], subject="alice@example.com")
    return Admin(gw.origin, http, token)


async def put(admin: Admin, body: dict[str, Any]) -> tuple[int, Any]:
    """PUT /admin/policy with a large body, streamed (aiohttp warns on large raw bytes)."""
    headers = {"authorization": f"Bearer {admin.token}", "content-type": "application/json"}
    data = io.BytesIO(json.dumps(body).encode())
    async with admin.http.put(f"{admin.origin}/admin/policy", data=data, headers=headers) as r:
        return r.status, await r.json()


def keywords(count: int) -> dict[str, Any]:
    words = [f"w{i}" for i in range(count)]
    return {"detector": "keywords", "name": "kw", "keywords": words, "action": "flag"}


async def test_put_refuses_a_section_no_policy_file_could_hold(admin: Admin) -> None:
    """100,001 keywords: 400 naming the section and the limit; the running version stays."""
    _, running = await admin.call("GET", "/admin/policy")
    bundle = copy.deepcopy(running["bundle"])
    bundle["guardrails"] = {"big": {"input": [keywords(MAX_NODES + 1)]}}

    status, answer = await put(admin, {"bundle": bundle, "base_version": running["version"]})

    assert status == 400, answer
    error = answer["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_policy")
    [issue] = error["errors"]
    assert issue["field"] == "guardrails"
    assert "guardrails.yaml" in issue["message"] and f"{MAX_NODES}" in issue["message"]
    _, after = await admin.call("GET", "/admin/policy")
    assert after["version"] == running["version"]


async def test_patch_refuses_a_team_no_policy_file_could_hold(admin: Admin) -> None:
    """A PATCH whose teams section would be past the limit is a 400 too."""
    models = ["small"] * MAX_NODES
    status, answer = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": {"models": models}, "base_version": 1}
    )
    assert status == 400, answer
    assert answer["error"]["errors"][0]["field"] == "teams"


ONE_FILE_POLICY = (
    ADMIN_POLICY
    + """\
guardrails:
  small: {input: [{detector: email, action: flag}]}
"""
)


async def test_a_watched_folder_that_cannot_hold_the_change_is_left_valid(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Each section fits its own file, but the folder's one file cannot hold them all:
    the folder is left as it was (still valid), and `GET /admin/policy` says why."""
    async with running_gateway(tmp_path, ONE_FILE_POLICY) as gw:
        token = await gw.token(team="demo", scopes=["gateway:admin"])
        admin = Admin(gw.origin, http, token)
        folder = gw.settings.policy_dir
        _, running = await admin.call("GET", "/admin/policy")
        bundle = copy.deepcopy(running["bundle"])
        bundle["guardrails"]["big"] = {"input": [keywords(MAX_NODES * 6 // 10)]}
        bundle["teams"]["demo"]["clients"] = [f"c{i}" for i in range(MAX_NODES * 5 // 10)]
        before = (folder / "bundle.yaml").read_text()

        status, answer = await put(admin, {"bundle": bundle, "base_version": running["version"]})
        assert status == 200, answer

        for _ in range(200):
            _, now = await admin.call("GET", "/admin/policy")
            if "cannot be rewritten" in now.get("folder", {}).get("problem", ""):
                break
            await asyncio.sleep(0.1)
        problem = now["folder"]["problem"]
        assert "cannot be rewritten" in problem and "bundle.yaml" in problem, problem
        assert (folder / "bundle.yaml").read_text() == before
        load_bundle(folder)  # still a valid folder
