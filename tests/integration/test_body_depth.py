"""A body nested past what orjson reads (1024 levels) is refused as too deep, over real HTTP.

orjson stops at 1024 levels with a decode error; that body is valid JSON, and the
caller is told the nesting limit (as for 129 to 1024 levels), not that it is malformed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.api.body import MAX_DEPTH
from tests.support.admin import ADMIN_POLICY
from tests.support.gateway import RunningGateway, running_gateway


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ADMIN_POLICY) as gateway:
        yield gateway


def deep(levels: int) -> bytes:
    """A valid chat body whose `tools` holds `levels` nested arrays."""
    return (
        b'{"model": "small", "messages": [{"role": "user", "content": "hi"}], "tools": '
        + b"[" * levels
        + b"]" * levels
        + b"}"
    )


async def post(
    gw: RunningGateway, method: str, path: str, body: bytes, token: str
) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, gw.origin + path, data=body, headers=headers) as response:
            return response.status, json.loads(await response.read())


@pytest.mark.parametrize("levels", [1024, 1100, 5000, 100_000])
async def test_an_inference_body_past_orjsons_depth_is_refused_as_too_deep(
    gw: RunningGateway, levels: int
) -> None:
    status, body = await post(gw, "POST", "/v1/chat/completions", deep(levels), await gw.token())
    assert status == 400, body
    error = body["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "nesting_too_deep")
    assert f"nested more than {MAX_DEPTH} levels" in error["message"], error
    assert "valid JSON" not in error["message"]


async def test_an_admin_body_past_orjsons_depth_is_refused_as_too_deep(gw: RunningGateway) -> None:
    token = await gw.token(scopes=["gateway:admin"])
    raw = b'{"bundle": {"teams": ' + b"[" * 5000 + b"]" * 5000 + b'}, "base_version": null}'
    status, body = await post(gw, "PUT", "/admin/policy", raw, token)
    assert status == 400, body
    assert body["error"]["code"] == "nesting_too_deep"
    assert f"nested more than {MAX_DEPTH} levels" in body["error"]["message"]


async def test_a_shallow_body_that_is_not_json_is_still_called_not_json(
    gw: RunningGateway,
) -> None:
    status, body = await post(gw, "POST", "/v1/chat/completions", b'{"model": ', await gw.token())
    assert status == 400, body
    assert "must be valid JSON" in body["error"]["message"]
    assert body["error"]["code"] is None
