"""Output rules on what an upstream says when it fails: a relayed 4xx, a 200 that is an
error object, an error event mid-stream (chat, completions, Responses) and a failed
Responses object reach the client redacted (or withheld, for a `block` rule), and the
ledger names the rules, as for an answer's content. Real gateway, real HTTP."""

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from tests.support.aiohttp_app import serving
from tests.support.gateway import RunningGateway, running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}", api_key: "${{UPSTREAM_KEY}}"}}
models:
  gpt-4o-mini:
    deployments: [{{provider: up, model: upstream-chat}}]
routing: {{retries: 0}}
teams:
  pii: {{models: ["*"], guardrails: [pii]}}
  strict: {{models: ["*"], guardrails: [strict]}}
  open: {{models: ["*"]}}
guardrails:
  pii:
    output:
      - {{detector: email, action: redact}}
      - {{detector: credit_card, action: redact}}
  strict:
    output:
      - {{detector: email, action: redact}}
      - {{detector: credit_card, action: block}}
"""
KEY = "sk-upstream-secret-0123456789"
EMAIL = "bob@example.com"
CARD = "4111 1111 1111 1111"
SAID = f"upstream said {EMAIL} {CARD}"
REDACTED = "upstream said [REDACTED:email] [REDACTED:credit_card]"
BOTH_REDACTED = [
    {"rule": "email", "action": "redact", "where": "output"},
    {"rule": "credit_card", "action": "redact", "where": "output"},
]
STRICT_BLOCKED = [
    {"rule": "email", "action": "redact", "where": "output"},
    {"rule": "credit_card", "action": "block", "where": "output"},
]


@dataclass
class Script:
    """The upstream's next answer: a status and a JSON body, or SSE events (raw bytes)."""

    status: int = 200
    body: Any = None
    events: list[bytes] = field(default_factory=list)


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


CHAT_CHUNK = sse(
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Hello "}, "finish_reason": None}],
    }
)
COMPLETION_CHUNK = sse(
    {
        "id": "c1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "text": "Hello ", "finish_reason": None}],
    }
)
RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1, "model": "m", "output": []}
RESPONSE_CREATED = sse(
    {
        "type": "response.created",
        "sequence_number": 0,
        "response": {**RESPONSE, "status": "in_progress"},
    },
    "response.created",
)
ERROR_OBJECT = {"error": {"message": SAID, "type": "server_error", "code": None, "param": None}}


@pytest.fixture
async def gateway(tmp_path, monkeypatch) -> AsyncIterator[tuple[RunningGateway, Script]]:
    monkeypatch.setenv("UPSTREAM_KEY", KEY)
    script = Script()

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        if not script.events:
            return web.json_response(script.body, status=script.status)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in script.events:
            await response.write(event)
        return response  # no [DONE]: the upstream stopped after its error

    app = web.Application()
    for route in ("chat/completions", "completions", "responses"):
        app.router.add_post(f"/v1/{route}", handle)
    async with serving(app) as origin:
        async with running_gateway(tmp_path, POLICY.format(base=f"{origin}/v1")) as gw:
            yield gw, script


async def guardrails_of(tmp_path: Path, request_id: str) -> Any:
    """The ledger row's guardrails column, once the writer has stored it (~0.2 s)."""
    for _ in range(100):
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            found = db.execute(
                "SELECT guardrails FROM usage_ledger WHERE request_id = ?", (request_id,)
            ).fetchone()
        if found is not None:
            return json.loads(found[0]) if found[0] else None
        await asyncio.sleep(0.05)
    raise AssertionError(f"no ledger row for {request_id}")


async def post(
    http: aiohttp.ClientSession, gw: RunningGateway, team: str, route: str, body: dict[str, Any]
) -> tuple[int, bytes, str]:
    """(status, body bytes, x-request-id)."""
    async with http.post(
        f"{gw.base_url}/{route}",
        json={"model": "gpt-4o-mini", **body},
        headers={"authorization": f"Bearer {await gw.token(team=team)}"},
    ) as response:
        return response.status, await response.read(), response.headers["x-request-id"]


def assert_clean(data: bytes) -> None:
    for leak in (EMAIL, "1111", KEY):
        assert leak.encode() not in data, data


CHAT = {"messages": [{"role": "user", "content": "hi"}]}
BODIES = {
    "chat/completions": CHAT,
    "completions": {"prompt": "hi"},
    "responses": {"input": "hi"},
}


# --- a relayed 4xx ------------------------------------------------------------------


async def test_a_relayed_400_has_its_message_redacted_through_the_sdk(gateway, tmp_path):
    """The upstream's 400 quotes the prompt (and our key): the SDK's BadRequestError says
    it redacted, the key still masked; the row names the output rules."""
    gw, script = gateway
    script.status = 400
    script.body = {"error": {"message": f"{SAID} key {KEY}", "type": "invalid_request_error"}}
    client = await gw.openai("pii")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", **CHAT)
    error = caught.value
    assert_clean(error.response.content)
    assert error.body["message"] == f"{REDACTED} key [redacted]"  # type: ignore[index]
    assert await guardrails_of(tmp_path, error.request_id or "") == BOTH_REDACTED


@pytest.mark.parametrize("route", list(BODIES))
async def test_a_relayed_4xx_a_block_rule_stops_keeps_its_status_not_its_text(
    gateway, tmp_path, http, route
):
    """A `block` rule on output: the client gets the upstream's status, type and code,
    and a message naming the rule instead of the upstream's text."""
    gw, script = gateway
    script.status = 422
    script.body = {"error": {"message": SAID, "type": "invalid_request_error", "code": "bad"}}
    status, data, request_id = await post(http, gw, "strict", route, BODIES[route])
    assert status == 422
    assert_clean(data)
    error = orjson.loads(data)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "bad")
    assert "'credit_card'" in error["message"]
    assert await guardrails_of(tmp_path, request_id) == STRICT_BLOCKED


async def test_a_team_without_output_rules_gets_the_upstream_message_as_it_came(gateway, http):
    gw, script = gateway
    script.status = 400
    script.body = {"error": {"message": SAID, "type": "invalid_request_error"}}
    status, data, _ = await post(http, gw, "open", "chat/completions", CHAT)
    assert status == 400 and orjson.loads(data)["error"]["message"] == SAID


# --- a 200 that is an error ---------------------------------------------------------

FAILED_RESPONSE = {**RESPONSE, "status": "failed", "error": {"code": "x", "message": SAID}}


async def test_a_200_failed_response_is_redacted(gateway, tmp_path, http):
    gw, script = gateway
    script.body = FAILED_RESPONSE
    status, data, request_id = await post(http, gw, "pii", "responses", BODIES["responses"])
    assert status == 200
    assert_clean(data)
    assert REDACTED.encode() in data
    assert await guardrails_of(tmp_path, request_id) == BOTH_REDACTED


@pytest.mark.parametrize(
    ("route", "body"),
    [("chat/completions", ERROR_OBJECT), ("completions", {"error": SAID})],  # TGI's shape
)
async def test_a_200_that_is_only_an_error_is_no_answer(gateway, http, route, body):
    """A failed attempt (providers/error_answer.py): the gateway's own 502, none of it."""
    gw, script = gateway
    script.body = body
    status, data, _ = await post(http, gw, "pii", route, BODIES[route])
    assert status == 502
    assert_clean(data)
    assert b"upstream said" not in data


async def test_a_200_failed_response_a_block_rule_stops_is_refused_as_an_answer_is(gateway, http):
    gw, script = gateway
    script.body = FAILED_RESPONSE
    status, data, _ = await post(http, gw, "strict", "responses", BODIES["responses"])
    assert status == 400
    assert_clean(data)
    assert orjson.loads(data)["error"]["code"] == "content_policy_violation"


# --- streams ------------------------------------------------------------------------

STREAMS = {
    "chat": ("chat/completions", [CHAT_CHUNK, sse(ERROR_OBJECT)]),
    "completions": ("completions", [COMPLETION_CHUNK, sse(ERROR_OBJECT)]),
    "responses-error": (
        "responses",
        [RESPONSE_CREATED, sse({"type": "error", "code": "x", "message": SAID}, "error")],
    ),
    "responses-failed": (
        "responses",
        [
            RESPONSE_CREATED,
            sse(
                {
                    "type": "response.failed",
                    "sequence_number": 1,
                    "response": {
                        **RESPONSE,
                        "status": "failed",
                        "error": {"code": "x", "message": SAID},
                    },
                },
                "response.failed",
            ),
        ],
    ),
}


@pytest.mark.parametrize("name", list(STREAMS))
async def test_a_streamed_error_event_is_redacted(gateway, tmp_path, http, name):
    gw, script = gateway
    route, script.events = STREAMS[name]
    status, data, request_id = await post(http, gw, "pii", route, {**BODIES[route], "stream": True})
    assert status == 200
    assert_clean(data)
    assert REDACTED.encode() in data
    assert await guardrails_of(tmp_path, request_id) == BOTH_REDACTED


@pytest.mark.parametrize("name", list(STREAMS))
async def test_a_streamed_error_event_a_block_rule_stops_ends_the_stream_without_it(
    gateway, tmp_path, http, name
):
    """As a blocked answer's stream ends: the gateway's content_policy_violation event."""
    gw, script = gateway
    route, script.events = STREAMS[name]
    status, data, request_id = await post(
        http, gw, "strict", route, {**BODIES[route], "stream": True}
    )
    assert status == 200
    assert_clean(data)
    assert b"content_policy_violation" in data and b"'credit_card'" in data

    assert await guardrails_of(tmp_path, request_id) == STRICT_BLOCKED


async def test_the_sdk_sees_a_redacted_error_mid_stream(gateway):
    """openai's stream raises the upstream's error event as an APIError: redacted."""
    gw, script = gateway
    script.events = STREAMS["chat"][1]
    client = await gw.openai("pii")
    stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True, **CHAT)
    with pytest.raises(openai.APIError) as caught:
        async for _ in stream:
            pass
    assert caught.value.message == REDACTED
