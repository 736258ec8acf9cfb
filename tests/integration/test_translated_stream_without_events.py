"""A streamed request to an anthropic deployment whose upstream answers 200 with no stream
(probe C, F1): an HTML page, JSON cut short, or an event stream that closes with no event.
litellm makes an empty `stop` chunk of each; the gateway sees that no upstream event came,
so nothing was sent yet: the attempt fails and the request fails over (with no deployment
left, 502 `upstream_unavailable`), as for the openai-wire types."""

from __future__ import annotations

import sqlite3

import openai
import pytest
from aiohttp import web

from tests.integration.providers.litellm_upstreams import LITELLM_WARNINGS
from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

pytestmark = LITELLM_WARNINGS

POLICY = """
providers:
  claude: {{type: anthropic, api_base: "{claude}", api_key: "${{ANTH_API_KEY}}"}}
  az: {{type: azure, api_base: "{azure}", api_key: "${{AZ_API_KEY}}", api_version: "2024-10-21"}}
models:
  m:
    deployments:
      - {{provider: claude, model: claude-3-5-haiku-latest, priority: 1}}
      - {{provider: az, model: gpt-4o-mini, priority: 2}}
    routing: {{retries: 1, failure_threshold: 5}}
  alone:
    deployments: [{{provider: claude, model: claude-3-5-haiku-latest}}]
    routing: {{retries: 0}}
teams:
  demo: {{models: ["*"]}}
"""
NO_STREAM = {
    "html": ("text/html", b"<html><body>502 Bad Gateway</body></html>"),
    "cut-json": ("application/json", b'{"id": "x", "choices": [ {bad'),
    "no-events": ("text/event-stream", b""),
}
HI = [{"role": "user", "content": "hi"}]


def _answering(content_type: str, body: bytes) -> web.Application:
    async def messages(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": content_type})
        await response.prepare(request)
        if body:
            await response.write(body)
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app


def _ledger(tmp_path) -> list[tuple[int, str, str | None]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return db.execute("SELECT status, outcome, error_code FROM usage_ledger").fetchall()


@pytest.mark.parametrize("answer", sorted(NO_STREAM))
async def test_a_translated_stream_with_no_event_fails_over(tmp_path, monkeypatch, answer):
    """The azure deployment answers the stream; the client never sees the empty one."""
    monkeypatch.setenv("ANTH_API_KEY", "sk-ant-key-0123456789")
    monkeypatch.setenv("AZ_API_KEY", "az-key-0123456789")
    async with (
        serving(_answering(*NO_STREAM[answer])) as claude,
        MockUpstream("az") as azure,
    ):
        policy = POLICY.format(claude=claude, azure=azure.origin)
        async with running_gateway(tmp_path, policy) as gw:
            client = await gw.openai()
            raw = await client.chat.completions.with_raw_response.create(
                model="m", messages=HI, stream=True, stream_options={"include_usage": True}
            )
            chunks = [chunk async for chunk in raw.parse()]
    assert raw.headers["x-gateway-deployment"] == "az/gpt-4o-mini"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(azure.requests) == 1


@pytest.mark.parametrize("answer", sorted(NO_STREAM))
async def test_with_no_deployment_left_it_is_the_gateways_502(tmp_path, monkeypatch, answer):
    """Not an empty success charged as ok: 502 upstream_unavailable, booked as such."""
    monkeypatch.setenv("ANTH_API_KEY", "sk-ant-key-0123456789")
    monkeypatch.setenv("AZ_API_KEY", "az-key-0123456789")
    async with serving(_answering(*NO_STREAM[answer])) as claude:
        policy = POLICY.format(claude=claude, azure="http://127.0.0.1:9")
        async with running_gateway(tmp_path, policy) as gw:
            client = await gw.openai()
            with pytest.raises(openai.InternalServerError) as caught:
                await client.chat.completions.create(model="alone", messages=HI, stream=True)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unavailable"
    assert _ledger(tmp_path) == [(502, "upstream_error", "upstream_unavailable")]
