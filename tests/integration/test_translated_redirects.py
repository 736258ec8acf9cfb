"""Probe A, end to end: an Anthropic-type provider whose api_base answers 307 to another
host. The caller gets 502 `upstream_unavailable` (or the next deployment's answer), the
host the Location names gets no request and no key, and no log line holds the Location."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2 as httpx
from aiohttp import web

from tests.integration.providers.litellm_upstreams import LITELLM_WARNINGS, run_upstream
from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

pytestmark = LITELLM_WARNINGS

SECRET = "sk-probeA-SECRET-aaaa"
POLICY = """
providers:
  anth: {{type: anthropic, api_base: "{redirector}", api_key: "${{PROBE_A_API_KEY}}"}}
  backup: {{type: anthropic, api_base: "{backup}", api_key: "${{PROBE_A_API_KEY}}"}}
models:
  claude-redir:
    deployments:
      - {{provider: anth, model: claude-3-5-sonnet-20241022}}
    price: {{input_per_mtok: 1, output_per_mtok: 1}}
    routing: {{retries: 0}}
  claude-backed:
    deployments:
      - {{provider: anth, model: claude-3-5-sonnet-20241022}}
      - {{provider: backup, model: claude-3-5-sonnet-20241022, priority: 2}}
    price: {{input_per_mtok: 1, output_per_mtok: 1}}
teams:
  t: {{models: ["*"]}}
"""
INTERNAL = {
    "id": "msg_internal", "type": "message", "role": "assistant", "model": "claude",
    "content": [{"type": "text", "text": "INTERNAL-ONLY DATA"}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 1},
}  # fmt: skip


@asynccontextmanager
async def _internal_host(seen: list[dict[str, str]]) -> AsyncIterator[str]:
    """127.0.0.2, outside GATEWAY_UPSTREAM_ALLOW: records each request's headers."""

    async def answer(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response(INTERNAL)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)
    await site.start()
    try:
        yield f"http://127.0.0.2:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _redirecting(target: str) -> web.Application:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(location=f"{target}/redirected{request.path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app


async def test_a_redirect_from_the_api_base_is_never_followed(tmp_path, monkeypatch, caplog):
    """The probe's setup: 502 upstream_unavailable, 127.0.0.2 sees nothing, no log holds
    the key or the Location; with a second deployment, its answer is served instead."""
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("GATEWAY_UPSTREAM_ALLOW", "127.0.0.1/32")
    monkeypatch.setenv("PROBE_A_API_KEY", SECRET)
    seen: list[dict[str, str]] = []
    log = tmp_path / "access.log"
    async with (
        _internal_host(seen) as internal,
        serving(_redirecting(internal)) as redirector,
        run_upstream("anthropic") as backup,
    ):
        policy = POLICY.format(redirector=redirector, backup=backup.base_url)
        async with running_gateway(tmp_path, policy, access_log=str(log)) as gw:
            headers = {"authorization": f"Bearer {await gw.token(team='t')}"}
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
            async with httpx.AsyncClient(base_url=gw.origin, timeout=30) as http:
                refused = await http.post(
                    "/v1/chat/completions", json={"model": "claude-redir", **body}, headers=headers
                )
                served = await http.post(
                    "/v1/chat/completions",
                    json={"model": "claude-backed", **body},
                    headers=headers,
                )
    assert refused.status_code == 502
    assert refused.json()["error"]["code"] == "upstream_unavailable"
    assert "INTERNAL-ONLY" not in refused.text
    assert served.status_code == 200
    assert served.json()["choices"][0]["message"]["content"] == "Hello there"
    assert served.headers["x-gateway-deployment"] == "backup/claude-3-5-sonnet-20241022"
    assert seen == []
    logged = log.read_text() + "\n".join(r.getMessage() for r in caplog.records)
    logged += json.dumps([getattr(r, "fields", None) for r in caplog.records], default=str)
    assert "HTTP 307" in logged  # the failed attempt is logged, by its status
    assert "redirected" not in logged and "127.0.0.2" not in logged and SECRET not in logged
