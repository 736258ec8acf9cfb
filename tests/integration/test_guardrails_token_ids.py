"""Prompts sent as token ids pass the same guardrails and token limit as text, on a real
gateway with a mock upstream (black-box probe: they were forwarded unchecked)."""

import aiohttp
import orjson
import pytest

from gateway.limits.token_count import encoding
from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

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
  open: {{models: ["*"]}}
guardrails:
  strict:
    input:
      - {{detector: secrets, action: block}}
      - {{detector: email, action: redact}}
    max_input_tokens: 2000
"""
KEY_IDS = encoding("cl100k_base").encode("key AKIAIOSFODNN7EXAMPLE")
KEY_IDS_O200K = encoding("o200k_base").encode("key AKIAIOSFODNN7EXAMPLE")
CLEAN_IDS = encoding("cl100k_base").encode("Say hello to the team.")


@pytest.fixture
async def setup(tmp_path, monkeypatch, http):
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            yield gw, up


async def post(http: aiohttp.ClientSession, gw, route: str, body: dict, team: str = "demo"):
    token = await gw.token(team=team)
    model = "text-embedding-3-small" if route == "embeddings" else "gpt-4o-mini"
    async with http.post(
        f"{gw.base_url}/{route}",
        json={"model": model, **body},
        headers={"authorization": f"Bearer {token}"},
    ) as response:
        return response.status, orjson.loads(await response.read())


SHAPES = [
    ("completions", "prompt", False),
    ("completions", "prompt", True),
    ("embeddings", "input", False),
    ("embeddings", "input", True),
]


@pytest.mark.parametrize(("route", "field", "nested"), SHAPES)
@pytest.mark.parametrize("ids", [KEY_IDS, KEY_IDS_O200K], ids=["cl100k", "o200k"])
async def test_a_secret_sent_as_token_ids_is_blocked(setup, http, route, field, nested, ids):
    """`{"prompt": ids}` or `[ids]` holding a key: 400 naming the rule, no upstream call."""
    gw, up = setup
    status, body = await post(http, gw, route, {field: [ids] if nested else ids})
    assert status == 400, body
    assert body["error"]["code"] == "content_policy_violation"
    assert "'secrets'" in body["error"]["message"]
    assert up.requests == []


@pytest.mark.parametrize(("route", "field", "nested"), SHAPES)
async def test_clean_token_ids_are_forwarded_unchanged(setup, http, route, field, nested):
    gw, up = setup
    sent = [CLEAN_IDS] if nested else CLEAN_IDS
    status, body = await post(http, gw, route, {field: sent})
    assert status == 200, body
    assert up.requests[-1].json[field] == sent


async def test_an_email_in_token_ids_is_refused_naming_the_field(setup, http):
    """The gateway does not rewrite ids: a redact rule's match there is a 400 whose
    `param` names the array, telling the caller to send text instead."""
    gw, up = setup
    clean = encoding("cl100k_base").encode("hello")
    ids = encoding("cl100k_base").encode("mail jane.doe@corp.example.com")
    # A list of token arrays (OpenAI refuses strings and arrays mixed in one input).
    status, body = await post(http, gw, "embeddings", {"input": [clean, ids]})
    assert status == 400 and body["error"]["code"] == "content_policy_violation"
    assert body["error"]["param"] == "input[1]" and "'email'" in body["error"]["message"]
    assert "jane" not in body["error"]["message"]
    assert up.requests == []


async def test_token_ids_count_toward_max_input_tokens(setup, http):
    """5,000 ids are 5,000 tokens: over the profile's 2,000, refused."""
    gw, up = setup
    status, body = await post(http, gw, "completions", {"prompt": [15339] * 5000})
    assert status == 400 and "'max_input_tokens'" in body["error"]["message"]
    status, body = await post(http, gw, "embeddings", {"input": [[15339] * 1000] * 3})
    assert status == 400 and "'max_input_tokens'" in body["error"]["message"]
    assert up.requests == []


async def test_ids_no_encoding_reads_are_a_clear_400(setup, http):
    """Ids past every vocabulary: 400 invalid_value naming the array, no upstream call."""
    gw, up = setup
    status, body = await post(http, gw, "completions", {"prompt": [[15339], [15339, 300000]]})
    assert status == 400 and body["error"]["code"] == "invalid_value"
    assert body["error"]["param"] == "prompt[1]"
    assert up.requests == []


async def test_a_team_without_input_rules_sends_ids_as_before(setup, http):
    """No guardrails to read them for: ids are forwarded without being decoded."""
    gw, up = setup
    status, _ = await post(http, gw, "completions", {"prompt": [[15339, 300000]]}, team="open")
    assert status == 200
    assert up.requests[-1].json["prompt"] == [[15339, 300000]]
