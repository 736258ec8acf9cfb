"""`base_version: null` over HTTP: the OpenAPI document and the server agree on it, and a
refusal writes it as JSON does (`null`), never as Python's `None`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

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


def _nullable(schema: dict[str, object]) -> bool:
    if schema.get("type") == "null":
        return True
    if isinstance(schema.get("type"), list) and "null" in schema["type"]:  # type: ignore[operator]
        return True
    variants = schema.get("anyOf") or schema.get("oneOf") or []
    return any(_nullable(v) for v in variants)  # type: ignore[union-attr]


async def _base_version_schema(admin: Admin, model: str) -> dict[str, object]:
    status, document = await admin.call("GET", "/openapi.json")
    assert status == 200
    schema = document["components"]["schemas"][model]
    assert "base_version" in schema["required"]
    return dict(schema["properties"]["base_version"])


async def test_put_with_a_null_base_version_over_a_running_one_is_409_saying_null(
    admin: Admin,
) -> None:
    """PUT base_version null (allowed by the schema: a first version) once one runs: 409, `null`."""
    schema = await _base_version_schema(admin, "PolicyPut")
    assert _nullable(schema)
    assert "null" in str(schema["description"])
    _, running = await admin.call("GET", "/admin/policy")
    status, answer = await admin.call(
        "PUT", "/admin/policy", {"bundle": running["bundle"], "base_version": None}
    )
    assert status == 409, answer
    message = answer["error"]["message"]
    assert "None" not in message
    assert message.startswith("base_version null is not the running policy (version 1")
    assert (answer["error"]["param"], answer["error"]["code"]) == (
        "base_version",
        "policy_conflict",
    )


async def test_patch_refuses_a_null_base_version_as_its_schema_says(admin: Admin) -> None:
    """PATCH's schema says base_version is an integer; null is a 400 naming it, no `None`."""
    schema = await _base_version_schema(admin, "TeamPatch")
    assert not _nullable(schema)
    status, answer = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": {}, "base_version": None}
    )
    assert status == 400, answer
    assert answer["error"]["param"] == "base_version"
    assert "None" not in answer["error"]["message"]
