"""A text position holding an object or an array instead of a string is scanned whole
over real HTTP: a key inside it is refused 400 content_policy_violation before any
upstream call, and an address inside it reaches the upstream redacted in place."""

from typing import Any

import orjson
import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}", api_key: "${{UPSTREAM_KEY}}"}}
models:
  gpt-4o-mini:
    deployments: [{{provider: up, model: upstream-chat}}]
teams:
  demo: {{models: ["*"], guardrails: [g]}}
guardrails:
  g:
    input:
      - {{detector: secrets, action: block}}
      - {{detector: email, action: redact}}
"""
KEY = "AKIAIOSFODNN7EXAMPLE"
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"k": KEY}}}
# (route, a body with the key inside a non-string text position)
HIDDEN: list[tuple[str, dict[str, Any]]] = [
    (
        "chat/completions",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": {"x": KEY}}]}]},
    ),
    ("chat/completions", {"messages": [{"role": "user", "name": {"a": KEY}, "content": "hi"}]}),
    ("chat/completions", {"messages": [{"role": "assistant", "tool_calls": [CALL]}]}),
    (
        "chat/completions",
        {
            "messages": [{"role": "user", "content": "hi"}],
            "prediction": {"type": "content", "content": {"a": KEY}},
        },
    ),
    ("responses", {"input": [{"role": "user", "content": {"text": KEY}}]}),
    (
        "responses",
        {"input": [{"type": "function_call_output", "call_id": "c1", "output": {"a": KEY}}]},
    ),
    ("responses", {"input": [{"type": "foo_item", "data": KEY}]}),
]


@pytest.fixture
async def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            yield gw, up, await gw.token()


@pytest.mark.parametrize(("route", "body"), HIDDEN)
async def test_a_key_inside_an_object_in_a_text_position_is_refused(setup, http, route, body):
    """Refused 400 content_policy_violation naming the rule, the key not echoed, and
    nothing reaches the upstream."""
    gw, up, token = setup
    async with http.post(
        f"{gw.base_url}/{route}",
        json={"model": "gpt-4o-mini", **body},
        headers={"authorization": f"Bearer {token}", "cache-control": "no-store"},
    ) as response:
        raw = await response.read()
        assert response.status == 400, raw
    error = orjson.loads(raw)["error"]
    assert error["code"] == "content_policy_violation"
    assert "secrets" in error["message"] and KEY not in raw.decode()
    assert up.requests == []


async def test_an_address_inside_an_object_reaches_the_upstream_redacted(setup, http):
    """The object keeps its shape; only the string that held the address changes."""
    gw, up, token = setup
    part = {"type": "text", "text": {"x": "mail bob@example.com", "n": 1}}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [part]}]}
    async with http.post(
        f"{gw.base_url}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {token}", "cache-control": "no-store"},
    ) as response:
        assert response.status == 200, await response.text()
    forwarded = up.requests[0].json["messages"][0]["content"][0]
    assert forwarded == {"type": "text", "text": {"x": "mail [REDACTED:email]", "n": 1}}
