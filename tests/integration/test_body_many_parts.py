"""A body of very many small parts (probe p25: half a million one-word messages, valid
and under the 16 MiB limit) is checked and estimated off the event loop, and answered
exactly as a small body is: served with the mock's count, a bad message named by its
index, a budget it cannot fit refused with its estimate, on each side of the size where
the walks move to a thread."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.api.body import WALKED_ON_LOOP_BYTES
from tests.support.gateway import RunningGateway, running_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
teams:
  demo: {models: ["*"]}
  tight:
    models: ["*"]
    budgets: [{period: day, tokens: 100}]
    limits: {concurrency: 2}
"""
MESSAGE_BYTES = len(b'{"role": "user", "content": "a"}, ')
COUNTS = {
    "few": 10,
    "walked on a thread": WALKED_ON_LOOP_BYTES // MESSAGE_BYTES + 100,
    "many": 120_000,
}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, POLICY) as gateway:
        yield gateway


def chat(count: int, **fields: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": "a"} for _ in range(count)]
    return {"model": "small", "messages": messages, **fields}


async def post(gw: RunningGateway, body: dict[str, Any], team: str = "demo") -> tuple[int, Any]:
    token = await gw.token(team=team)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    raw = json.dumps(body).encode()
    async with aiohttp.ClientSession() as http:
        url = f"{gw.base_url}/chat/completions"
        async with http.post(url, data=io.BytesIO(raw), headers=headers) as response:
            return response.status, json.loads(await response.read())


@pytest.mark.parametrize("count", COUNTS.values(), ids=COUNTS.keys())
async def test_many_messages_are_served_and_counted(gw: RunningGateway, count: int) -> None:
    status, body = await post(gw, chat(count, max_tokens=5))
    assert status == 200, body
    # Each message is its overhead and its one-token text, however many there are.
    few_status, few = await post(gw, chat(1, max_tokens=5))
    assert few_status == 200
    assert body["usage"]["prompt_tokens"] >= few["usage"]["prompt_tokens"] + (count - 1) * 4


@pytest.mark.parametrize("count", COUNTS.values(), ids=COUNTS.keys())
async def test_a_bad_last_message_is_named_by_its_index(gw: RunningGateway, count: int) -> None:
    body = chat(count)
    body["messages"][-1] = {"role": "robot", "content": "a"}
    status, answer = await post(gw, body)
    assert status == 400, answer
    assert answer["error"]["param"] == f"messages[{count - 1}].role"


@pytest.mark.parametrize("count", COUNTS.values(), ids=COUNTS.keys())
async def test_a_budget_too_small_refuses_with_the_estimate(gw: RunningGateway, count: int) -> None:
    """The estimate made on a thread is the one made inline: prompt plus allowance."""
    status, answer = await post(gw, chat(count, max_tokens=200), team="tight")
    assert status == 429, answer
    error = answer["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    estimate = int(error["message"].split("estimate (", 1)[1].split(" ", 1)[0])
    assert estimate >= 200 + count * 4
