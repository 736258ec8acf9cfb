"""Every inference route is guarded: each text a request carries, each text an answer carries."""

import aiohttp
import orjson
import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}", api_key: "${{UPSTREAM_KEY}}"}}
models:
  gpt-4o-mini:
    deployments: [{{provider: up, model: upstream-chat}}]
  text-embedding-3-small:
    deployments: [{{provider: up, model: upstream-embed}}]
teams:
  demo: {{models: ["*"], guardrails: [strict]}}
guardrails:
  strict:
    rules:
      - {{keywords: [project nightjar], name: codename, action: block, where: [input]}}
      - {{detector: email, action: redact, where: [input]}}
      - {{detector: credit_card, action: redact}}
"""
EMAIL = "jane.doe@corp.example.com"
CARD = "5555 5555 5555 4444"

# (route, body with the email in one place, where the upstream's copy holds that text)
REQUEST_TEXTS = [
    (
        "chat/completions",
        {"messages": [{"role": "user", "content": "X"}]},
        lambda b: b["messages"][0]["content"],
    ),
    (
        "chat/completions",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "X"}]}]},
        lambda b: b["messages"][0]["content"][0]["text"],
    ),
    (
        "chat/completions",
        {
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "f", "description": "X", "parameters": {}},
                }
            ],
        },
        lambda b: b["tools"][0]["function"]["description"],
    ),
    (
        "chat/completions",
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "X"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            ]
        },
        lambda b: b["messages"][1]["tool_calls"][0]["function"]["arguments"],
    ),
    ("completions", {"prompt": "X"}, lambda b: b["prompt"]),
    ("completions", {"prompt": ["a", "X"]}, lambda b: b["prompt"][1]),
    ("embeddings", {"input": "X"}, lambda b: b["input"]),
    ("embeddings", {"input": ["a", "X"]}, lambda b: b["input"][1]),
    ("responses", {"input": "X"}, lambda b: b["input"]),
    ("responses", {"input": "hi", "instructions": "X"}, lambda b: b["instructions"]),
    (
        "responses",
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": "X"}]}]},
        lambda b: b["input"][0]["content"][0]["text"],
    ),
]


def with_text(value, text):
    """`value` with every "X" string replaced by `text`."""
    if value == "X":
        return text
    if isinstance(value, dict):
        return {k: with_text(v, text) for k, v in value.items()}
    if isinstance(value, list):
        return [with_text(v, text) for v in value]
    return value


def model_of(route: str) -> str:
    return "text-embedding-3-small" if route == "embeddings" else "gpt-4o-mini"


@pytest.fixture
async def setup(tmp_path, monkeypatch, http):
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            token = await gw.token()
            yield gw, up, token


async def post(http: aiohttp.ClientSession, gw, token, route, body):
    async with http.post(
        f"{gw.base_url}/{route}", json=body, headers={"authorization": f"Bearer {token}"}
    ) as response:
        return response.status, await response.read()


@pytest.mark.parametrize(("route", "body", "where"), REQUEST_TEXTS)
async def test_every_request_text_is_redacted_before_it_leaves(setup, http, route, body, where):
    """An email anywhere a request carries text reaches the upstream as [REDACTED:email]."""
    gw, up, token = setup
    status, _ = await post(
        http, gw, token, route, {"model": model_of(route), **with_text(body, f"to {EMAIL}")}
    )
    assert status == 200
    assert where(up.requests[-1].json) == "to [REDACTED:email]"
    assert EMAIL not in up.requests[-1].body.decode()


@pytest.mark.parametrize(("route", "body", "where"), REQUEST_TEXTS)
async def test_every_request_text_is_blocked_by_a_keyword(setup, http, route, body, where):
    """A blocked phrase anywhere in a request: 400 naming the rule, no upstream call."""
    gw, up, token = setup
    status, raw = await post(
        http,
        gw,
        token,
        route,
        {"model": model_of(route), **with_text(body, "about Project Nightjars")},
    )
    # "Nightjars" is another word: not the keyword; the phrase itself is, however spaced.
    assert status == 200
    before = len(up.requests)
    status, raw = await post(
        http,
        gw,
        token,
        route,
        {"model": model_of(route), **with_text(body, "about PROJECT NIGHTJAR")},
    )
    error = orjson.loads(raw)["error"]
    assert status == 400
    assert error["code"] == "content_policy_violation"
    assert "'codename'" in error["message"] and "NIGHTJAR" not in error["message"]
    assert len(up.requests) == before


@pytest.mark.parametrize("route", ["chat/completions", "completions", "responses"])
@pytest.mark.parametrize("stream", [False, True])
async def test_every_answer_text_is_redacted(setup, http, route, stream):
    """A card number in any answer, whole or streamed, reaches the client redacted."""
    gw, up, token = setup
    up.behave(Behaviour("ok", content=f"card {CARD} ok", chunks=7))
    body = {"model": "gpt-4o-mini", "stream": stream}
    body.update({"prompt": "hi"} if route == "completions" else {})
    body.update(
        {"messages": [{"role": "user", "content": "hi"}]} if route == "chat/completions" else {}
    )
    body.update({"input": "hi"} if route == "responses" else {})
    status, raw = await post(http, gw, token, route, body)
    assert status == 200
    assert b"5555" not in raw
    assert b"[REDACTED:credit_card]" in raw
    if stream:
        assert raw.rstrip().endswith(b"[DONE]") or b"response.completed" in raw
