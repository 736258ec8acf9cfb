"""A translated upstream's failure is logged by status and error type, never by its message
(probe C, F3): an Anthropic 500 quoting the request's messages leaves no prompt text in the
failed attempt's warning or the access line's `error_detail`, as for the openai types."""

from __future__ import annotations

import json
import logging

import httpx2 as httpx
from aiohttp import web

from tests.integration.providers.litellm_upstreams import LITELLM_WARNINGS
from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

pytestmark = LITELLM_WARNINGS

PROMPT = "MY-PRIVATE-PROMPT-TEXT"
POLICY = """
providers:
  claude: {{type: anthropic, api_base: "{origin}", api_key: "${{ANTH_API_KEY}}"}}
models:
  m:
    deployments: [{{provider: claude, model: claude-3-5-haiku-latest}}]
    routing: {{retries: 0}}
teams:
  demo: {{models: ["*"]}}
"""


async def _echoing(request: web.Request) -> web.Response:
    messages = json.dumps((await request.json()).get("messages"))
    error = {"type": "api_error", "message": f"could not process {messages}"}
    return web.json_response({"type": "error", "error": error}, status=500)


async def test_a_translated_failure_logs_no_prompt_text(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    monkeypatch.setenv("ANTH_API_KEY", "sk-ant-key-0123456789")
    app = web.Application()
    app.router.add_post("/v1/messages", _echoing)
    log = tmp_path / "access.log"
    async with serving(app) as origin:
        policy = POLICY.format(origin=origin)
        async with running_gateway(tmp_path, policy, access_log=str(log)) as gw:
            headers = {"authorization": f"Bearer {await gw.token()}"}
            body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}]}
            async with httpx.AsyncClient(base_url=gw.origin, timeout=30) as http:
                reply = await http.post("/v1/chat/completions", json=body, headers=headers)
    assert reply.status_code == 502
    warnings = [r for r in caplog.records if r.getMessage() == "upstream attempt failed"]
    details = [r.__dict__["fields"]["detail"] for r in warnings]
    assert details and all(PROMPT not in d for d in details)
    assert all("HTTP 500" in d and "type=api_error" in d for d in details), details
    access = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line.get("error_detail") for line in access if line.get("error_detail")]
    assert PROMPT not in log.read_text()
