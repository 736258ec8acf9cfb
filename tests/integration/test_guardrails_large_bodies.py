"""Bodies of megabytes that are mostly structure, not text (a tool schema of empty
lists, tool-call arguments of escapes, an answer asked as JSON full of escapes): the
guardrail check gives up on the event loop at once and runs on a thread, so other
clients keep being served, and the request is decided as before. (The requests are
refused: a body over 1 MiB forwarded upstream makes aiohttp warn, an error here.)"""

import json

import orjson
import pytest

from tests.integration.test_guardrails_dense import no_stall, post_while_pinging
from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}", api_key: "${{UPSTREAM_KEY}}"}}
models:
  gpt-4o-mini:
    deployments: [{{provider: up, model: upstream-chat}}]
teams:
  demo: {{models: ["*"], guardrails: [pii]}}
guardrails:
  pii:
    rules:
      - {{detector: secrets, action: block}}
      - {{detector: email, action: redact}}
      - {{detector: credit_card, action: redact}}
"""
MB = 1_000_000
# The checks below took the event loop 1-3 s each before (one /healthz round of nearly
# all the request's time); on a thread, the longest round here is ~0.2 s, and a slow CI
# machine (~2x) doubles it: `no_stall` bounds a round by a share of all of them.


@pytest.fixture
async def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            yield gw, up, await gw.token()


SECRET = "AKIAZ7Q2W9X4C6V8B1N3"  # the secrets rule blocks it: nothing goes upstream


def refused_for_secrets(status: int, raw: bytes) -> bool:
    error = orjson.loads(raw)["error"]
    return (
        status == 400
        and error["code"] == "content_policy_violation"
        and "'secrets'" in error["message"]
        and SECRET not in error["message"]
    )


async def test_a_tool_schema_of_megabytes_does_not_stall_others(setup):
    """4 MB of empty lists in a tool's schema (seconds of walking on the loop before), a
    key in its last text: /healthz keeps answering, and the request is refused naming
    the rule, with no upstream call."""
    gw, up, token = setup
    schema = {"type": "object", "examples": [[]] * MB, "description": f"key {SECRET}"}
    tool = {"type": "function", "function": {"name": "lookup", "parameters": schema}}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    status, raw, _, latencies = await post_while_pinging(gw, token, {**body, "tools": [tool]})
    assert refused_for_secrets(status, raw), raw[:300]
    assert up.requests == []
    assert len(latencies) >= 3 and no_stall(latencies), (max(latencies), sum(latencies))


async def test_tool_call_arguments_of_escapes_do_not_stall_others(setup):
    """6 MB of JSON escapes in an assistant's tool-call arguments, a key at their end:
    /healthz keeps answering, and the request is refused naming the rule."""
    gw, up, token = setup
    arguments = json.dumps({"note": "\n" * (3 * MB) + SECRET})
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ],
    }
    status, raw, _, latencies = await post_while_pinging(gw, token, body)
    assert refused_for_secrets(status, raw), raw[:300]
    assert up.requests == []
    assert len(latencies) >= 3 and no_stall(latencies), (max(latencies), sum(latencies))


async def test_an_answer_asked_as_json_of_escapes_does_not_stall_others(setup):
    """An upstream answer (asked as JSON) of 6 MB of escapes with a mail address at its
    end: /healthz keeps answering; the client gets it as JSON, the address redacted."""
    gw, up, token = setup
    content = json.dumps({"note": "\n" * (3 * MB) + "jo@corp.example.com"})
    up.behave(Behaviour("ok", content=content))
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "answer in JSON"}],
        "response_format": {"type": "json_object"},
    }
    status, raw, _, latencies = await post_while_pinging(gw, token, body)
    assert status == 200, raw[:300]
    answer = orjson.loads(orjson.loads(raw)["choices"][0]["message"]["content"])
    assert answer == {"note": "\n" * (3 * MB) + "[REDACTED:email]"}
    assert len(latencies) >= 3 and no_stall(latencies), (max(latencies), sum(latencies))
