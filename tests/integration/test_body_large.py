"""Large bodies are decoded and checked off the event loop (api/body.py OFF_LOOP_BYTES,
WALKED_ON_LOOP_BYTES): over real HTTP, each kind of body is answered exactly as a small
one is, on either side of those sizes."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.api.body import MAX_DEPTH, OFF_LOOP_BYTES, WALKED_ON_LOOP_BYTES
from tests.support.admin import ADMIN_POLICY
from tests.support.gateway import RunningGateway, running_gateway

# Prompt text that puts a body past each size (and one that stays small).
SIZES = {
    "small": 1_000,
    "walked on a thread": WALKED_ON_LOOP_BYTES + 1_000,
    "decoded on a thread": OFF_LOOP_BYTES + 1_000,
}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ADMIN_POLICY) as gateway:
        yield gateway


def chat(padding: int, **fields: Any) -> dict[str, Any]:
    text = "lorem ipsum " * (padding // 12)
    return {"model": "small", "messages": [{"role": "user", "content": text}], **fields}


async def post(gw: RunningGateway, raw: bytes) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {await gw.token()}", "content-type": "application/json"}
    async with aiohttp.ClientSession() as http:
        url = f"{gw.base_url}/chat/completions"
        async with http.post(url, data=io.BytesIO(raw), headers=headers) as response:
            return response.status, json.loads(await response.read())


@pytest.mark.parametrize("padding", SIZES.values(), ids=SIZES.keys())
async def test_a_valid_body_is_answered(gw: RunningGateway, padding: int) -> None:
    status, body = await post(gw, json.dumps(chat(padding, max_tokens=5)).encode())
    assert status == 200, body
    assert body["object"] == "chat.completion"


@pytest.mark.parametrize("padding", SIZES.values(), ids=SIZES.keys())
async def test_a_body_cut_short_is_not_json(gw: RunningGateway, padding: int) -> None:
    status, body = await post(gw, json.dumps(chat(padding)).encode()[:-3])
    assert status == 400, body
    assert "must be valid JSON" in body["error"]["message"]


@pytest.mark.parametrize("levels", [MAX_DEPTH + 10, 2_000])
@pytest.mark.parametrize("padding", SIZES.values(), ids=SIZES.keys())
async def test_a_body_too_deep_is_refused_naming_its_field(
    gw: RunningGateway, padding: int, levels: int
) -> None:
    raw = json.dumps(chat(padding)).encode()[:-1]
    raw += b', "tools": ' + b"[" * levels + b"]" * levels + b"}"
    status, body = await post(gw, raw)
    assert status == 400, body
    error = body["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "nesting_too_deep")
    assert f"nested more than {MAX_DEPTH} levels" in error["message"]
    if levels < 1024:  # orjson read it: the field is named
        assert error["param"] == "tools"


@pytest.mark.parametrize("padding", SIZES.values(), ids=SIZES.keys())
async def test_an_integer_past_64_bits_is_refused_naming_its_field(
    gw: RunningGateway, padding: int
) -> None:
    raw = json.dumps(chat(padding, metadata={"n": 1})).encode()
    raw = raw.replace(b'"n": 1', b'"n": 123456789012345678901234567890')
    status, body = await post(gw, raw)
    assert status == 400, body
    assert body["error"]["param"] == "metadata.n", body


@pytest.mark.parametrize("padding", SIZES.values(), ids=SIZES.keys())
async def test_many_brackets_within_the_depth_are_forwarded(
    gw: RunningGateway, padding: int
) -> None:
    """More brackets than MAX_DEPTH (walked), none deeper than it: answered."""
    raw = json.dumps(chat(padding, max_tokens=5, metadata={"k": [[1]] * 300})).encode()
    status, body = await post(gw, raw)
    assert status == 200, body
