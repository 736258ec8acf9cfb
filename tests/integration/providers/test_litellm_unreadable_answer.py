"""A 200 whose body is no answer of the provider's is the deployment's failure (fail over,
502 `upstream_unavailable` when none answers), never the caller's 4xx: litellm calls what
it cannot convert a 422, which would otherwise pass back as `invalid_request_error`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from aiohttp import web

from gateway.providers.base import UpstreamFailure
from gateway.providers.litellm_adapter import LitellmProvider
from tests.integration.providers.litellm_upstreams import (
    API_KEY,
    AWS,
    LITELLM_WARNINGS,
    upstream_call,
)
from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

pytestmark = LITELLM_WARNINGS

MODELS = {
    "anthropic": "claude-3-haiku-20240307",
    "gemini": "gemini-1.5-flash",
    "bedrock": "anthropic.claude-3-haiku-20240307-v1:0",
}
NOT_ANSWERS = [
    b'{"unexpected": true}',
    b"{}",
    b"[]",
    b'"text"',
    b"not json",
    b'{"candidates": "x"}',
]
MESSAGES = [{"role": "user", "content": "hi"}]


def _answering(body: bytes) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


@pytest.mark.parametrize("body", NOT_ANSWERS)
@pytest.mark.parametrize("kind", list(MODELS))
async def test_a_200_that_is_no_answer_is_a_failed_attempt(kind: str, body: bytes) -> None:
    """Whatever litellm makes of it, the provider raises UpstreamFailure."""
    async with serving(_answering(body)) as origin:
        if kind == "bedrock":
            provider = LitellmProvider("p", "bedrock", origin, None, AWS)
        else:
            provider = LitellmProvider("p", kind, origin, API_KEY, {})  # type: ignore[arg-type]
        try:
            with pytest.raises(UpstreamFailure):
                await provider.send(upstream_call("chat", MODELS[kind], {"messages": MESSAGES}))
        finally:
            await provider.close()


POLICY = """\
providers:
  gem: {{type: gemini, api_base: "{origin}", api_key: "${{GEM_TEST_API_KEY}}"}}
  demo: {{type: mock}}
models:
  g:
    deployments:
      - {{provider: gem, model: gemini-1.5-flash, priority: 1}}
      - {{provider: demo, model: mock-chat, priority: 2}}
  only-g:
    deployments: [{{provider: gem, model: gemini-1.5-flash}}]
    routing: {{retries: 0}}
teams:
  demo: {{models: ["*"]}}
"""


async def test_a_gemini_200_that_is_no_answer_fails_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller gets the next deployment's answer; with no other, 502 upstream_unavailable."""
    monkeypatch.setenv("GEM_TEST_API_KEY", API_KEY)
    async with (
        serving(_answering(b'{"unexpected": true}')) as origin,
        running_gateway(tmp_path, POLICY.format(origin=origin)) as gw,
    ):
        headers = {"authorization": f"Bearer {await gw.token()}"}
        async with httpx.AsyncClient(base_url=gw.origin, timeout=60) as client:
            replies = [
                await client.post(
                    "/v1/chat/completions",
                    json={"model": model, "messages": MESSAGES},
                    headers=headers,
                )
                for model in ("g", "only-g")
            ]
    failed_over, alone = replies
    assert failed_over.status_code == 200, failed_over.text
    assert failed_over.headers["x-gateway-deployment"] == "demo/mock-chat"
    assert alone.status_code == 502, alone.text
    assert alone.json()["error"]["code"] == "upstream_unavailable"
