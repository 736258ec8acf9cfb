"""A stream that fails after its first byte (an event that is not JSON, an upstream that
stops sending, a connection reset) is logged as a whole answer's failure is: an "upstream
attempt failed" line naming the deployment and the cause, and the cause as the access
line's `error_detail`. So is a whole answer's 502 (its last attempt's cause)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m:
    deployments: [{{provider: up, model: up-model}}]
    routing: {{retries: 0, attempt_timeout_s: 0.5, timeout_s: 10}}
teams:
  demo: {{models: ["*"]}}
"""
HI = [{"role": "user", "content": "hi"}]


def access_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def failed_attempts(caplog) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.getMessage() == "upstream attempt failed"]


def garbage_app() -> web.Application:
    """Three chunks, then an event that is not JSON."""

    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for piece in ("a", "b", "c"):
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await response.write(b"data: {this is not json\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def stream_until_error(gw) -> str:
    client = await gw.openai()
    stream = await client.chat.completions.create(model="m", messages=HI, stream=True)
    with pytest.raises(openai.APIError) as caught:
        async for _ in stream:
            pass
    return caught.value.message


@pytest.mark.parametrize(
    ("behaviour", "status", "cause"),
    [
        (Behaviour("stream_drop", fault_after=2), 502, "stream broke"),
        (Behaviour("stream_stall", fault_after=2), 504, "stream stalled"),
    ],
    ids=["reset", "stall"],
)
async def test_a_stream_failing_midway_is_logged(tmp_path, caplog, behaviour, status, cause):
    log = tmp_path / "access.log"
    async with MockUpstream("up") as up:
        up.behave(behaviour)
        async with running_gateway(
            tmp_path, POLICY.format(base=up.base_url), access_log=str(log)
        ) as gw:
            await stream_until_error(gw)
    [line] = access_lines(log)
    assert line["status"] == status and line["stream"] is True
    assert cause in (line["error_detail"] or "")
    [failed] = failed_attempts(caplog)
    assert failed["deployment"] == "up/up-model"
    assert failed["request_id"] == line["request_id"]
    assert cause in failed["detail"]


async def test_a_stream_with_an_event_that_is_not_json_is_logged(tmp_path, caplog):
    log = tmp_path / "access.log"
    async with serving(garbage_app()) as origin:
        async with running_gateway(
            tmp_path, POLICY.format(base=f"{origin}/v1"), access_log=str(log)
        ) as gw:
            await stream_until_error(gw)
    [line] = access_lines(log)
    assert line["status"] == 502
    assert "not JSON" in (line["error_detail"] or "")
    [failed] = failed_attempts(caplog)
    assert failed["deployment"] == "up/up-model"
    assert "stream sent an event that is not JSON" in failed["detail"]


async def test_a_whole_answers_502_names_its_cause_on_the_access_line(tmp_path, caplog):
    log = tmp_path / "access.log"
    async with MockUpstream("up") as up:
        up.behave("status", status=500)
        async with running_gateway(
            tmp_path, POLICY.format(base=up.base_url), access_log=str(log)
        ) as gw:
            client = await gw.openai(max_retries=0)
            with pytest.raises(openai.APIStatusError):
                await client.chat.completions.create(model="m", messages=HI)
    [line] = access_lines(log)
    assert line["status"] == 502
    assert "HTTP 500" in (line["error_detail"] or "")
    assert "HTTP 500" in failed_attempts(caplog)[0]["detail"]
