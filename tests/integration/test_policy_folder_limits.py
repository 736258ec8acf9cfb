"""What the admin API takes, a policy folder can hold: export, check and apply round-trip
(a section past a file's limits split across files), and a folder `serve --policies`
keeps is never left invalid by the gateway's own rewrite."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.policy import bundle_text
from gateway.policy.loader import MAX_NODES, load_bundle
from tests.support.admin import ADMIN_POLICY, Admin
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import run_gateway


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


async def test_put_refuses_an_entry_no_policy_file_could_hold(admin: Admin) -> None:
    """A guardrail of 100,001 keywords: 400 naming it and the limit; the running version stays."""
    _, running = await admin.call("GET", "/admin/policy")
    bundle = copy.deepcopy(running["bundle"])
    bundle["guardrails"] = {"big": {"input": [keywords(MAX_NODES + 1)]}}

    status, answer = await put(admin, {"bundle": bundle, "base_version": running["version"]})

    assert status == 400, answer
    error = answer["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_policy")
    [issue] = error["errors"]
    assert issue["field"] == "guardrails.big"
    assert "guardrails.yaml" in issue["message"] and f"{MAX_NODES}" in issue["message"]
    _, after = await admin.call("GET", "/admin/policy")
    assert after["version"] == running["version"]


async def test_patch_refuses_a_team_no_policy_file_could_hold(admin: Admin) -> None:
    """A PATCH making one team past the limit is a 400 naming the team."""
    models = ["small"] * MAX_NODES
    status, answer = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": {"models": models}, "base_version": 1}
    )
    assert status == 400, answer
    assert answer["error"]["errors"][0]["field"] == "teams.search"


async def folder_brought_to(admin: Admin, folder: Path, version: int) -> None:
    """Wait until the served folder holds `version`: its marker says so and
    `GET /admin/policy` shows no `folder` problem. The policy is read only once the
    marker says so: each read of 24,000 teams is a big answer, and reading it ten times a
    second starved the folder's own rewrite on a loaded CI machine (not there in 113 s)."""
    deadline = time.monotonic() + 300
    problem = None
    while time.monotonic() < deadline:
        marker = bundle_text.read_marker(folder)
        if marker is not None and marker.version == version:
            _, now = await admin.call("GET", "/admin/policy")
            if "folder" not in now:
                return
            problem = now["folder"]
        await asyncio.sleep(0.2)
    raise AssertionError(f"the folder was not brought to version {version}: {problem}")


async def test_a_policy_past_one_file_exports_checks_and_applies_back(
    admin: Admin, gw: RunningGateway, tmp_path: Path
) -> None:
    """24,000 teams (more values than one file holds): PUT, PATCH and rollback take it;
    the served folder and an export both split `teams` across files that check and load
    back to the running version."""
    _, running = await admin.call("GET", "/admin/policy")
    bundle = copy.deepcopy(running["bundle"])
    bundle["teams"].update({f"t{i}": {"models": ["small"]} for i in range(24_000)})
    status, answer = await put(admin, {"bundle": bundle, "base_version": running["version"]})
    assert status == 200, answer
    status, answer = await admin.call(
        "PATCH", "/admin/teams/t5", {"changes": {"models": ["large"]}, "base_version": 2}
    )
    assert status == 200, answer
    status, answer = await admin.call("POST", "/admin/policy/rollback", {"version": 2})
    assert status == 200, answer
    _, now = await admin.call("GET", "/admin/policy")
    assert now["version"] == 4

    folder = gw.settings.policy_dir
    await folder_brought_to(admin, folder, 4)
    assert sorted(p.name for p in folder.glob("*.yaml")) == ["bundle-2.yaml", "bundle.yaml"]
    assert load_bundle(folder).raw == now["bundle"]

    out = tmp_path / "exported"
    env = {"GATEWAY_DATABASE_URL": gw.settings.database_url}
    exported = run_gateway("policy", "export", str(out), cwd=tmp_path, env=env)
    assert exported.returncode == 0, exported.stderr
    assert run_gateway("policy", "check", str(out), cwd=tmp_path, env=env).returncode == 0
    assert {"teams.yaml", "teams-2.yaml"} <= {p.name for p in out.glob("*.yaml")}
    applied = run_gateway("policy", "apply", str(out), cwd=tmp_path, env=env)
    assert applied.returncode == 0 and "no changes" in applied.stdout, applied.stderr
