"""A `${VAR}` in the path of a provider's `api_base` is a secret (probe C, F2): an upstream
that quotes the path it was asked (`no route /oai/<token>/v1/...`) has it cut out of the
client's error, the access line's `error_detail` and the failed attempt's warning, for the
openai-wire and the litellm-translated clients alike."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2 as httpx
from aiohttp import web

from tests.integration.providers.litellm_upstreams import LITELLM_WARNINGS
from tests.support.aiohttp_app import serving
from tests.support.gateway import RunningGateway, running_gateway

pytestmark = LITELLM_WARNINGS

TOKEN = "PTSECRETzz91"
POLICY = """
providers:
  oai-pt: {{type: openai, api_base: "{origin}/oai/${{PATH_TOKEN}}/v1", api_key: "${{OAI_API_KEY}}"}}
  claude-pt:
    type: anthropic
    api_base: "{origin}/anth/${{PATH_TOKEN}}"
    api_key: "${{ANTH_API_KEY}}"
models:
  m-oai:
    deployments: [{{provider: oai-pt, model: gpt-4o-mini}}]
    routing: {{retries: 0}}
  m-claude:
    deployments: [{{provider: claude-pt, model: claude-3-5-haiku-latest}}]
    routing: {{retries: 0}}
teams:
  demo: {{models: ["*"]}}
"""


async def _no_route(request: web.Request) -> web.Response:
    """An upstream that knows no such path and says which (as many servers do)."""
    message = f"no route {request.path}"
    if request.path.startswith("/anth/"):
        error = {"type": "error", "error": {"type": "not_found_error", "message": message}}
        return web.json_response(error, status=404)
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error"}}, status=400
    )


@asynccontextmanager
async def gateway_for(tmp_path, monkeypatch) -> AsyncIterator[RunningGateway]:
    """The gateway on the path-quoting upstream; its access log is whole once it stopped."""
    monkeypatch.setenv("PATH_TOKEN", TOKEN)
    monkeypatch.setenv("OAI_API_KEY", "sk-oai-key-0123456789")
    monkeypatch.setenv("ANTH_API_KEY", "sk-ant-key-0123456789")
    app = web.Application()
    app.router.add_post("/{tail:.*}", _no_route)
    async with (
        serving(app) as origin,
        running_gateway(
            tmp_path, POLICY.format(origin=origin), access_log=str(tmp_path / "access.log")
        ) as gw,
    ):
        yield gw


async def _chat(gw, model: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {await gw.token()}"}
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=gw.origin, timeout=30) as http:
        return await http.post("/v1/chat/completions", json=body, headers=headers)


async def test_an_upstream_quoting_the_path_shows_the_client_no_token(tmp_path, monkeypatch):
    """A client whose request the upstream refuses (400) reads its message without the token."""
    async with gateway_for(tmp_path, monkeypatch) as gw:
        reply = await _chat(gw, "m-oai")
    assert reply.status_code == 400
    assert TOKEN not in reply.text
    assert "no route" in reply.json()["error"]["message"]


async def test_a_failed_translated_attempt_logs_no_token(tmp_path, monkeypatch, caplog):
    """An anthropic upstream's 404 quoting the path: neither the warning nor the access line
    holds the token."""
    caplog.set_level(logging.WARNING)
    async with gateway_for(tmp_path, monkeypatch) as gw:
        reply = await _chat(gw, "m-claude")
    assert reply.status_code == 502
    assert TOKEN not in reply.text
    warnings = [r for r in caplog.records if r.getMessage() == "upstream attempt failed"]
    assert warnings
    assert all(TOKEN not in json.dumps(r.__dict__, default=str) for r in warnings)
    access = (tmp_path / "access.log").read_text()
    assert '"error_detail"' in access
    assert TOKEN not in access
