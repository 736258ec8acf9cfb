"""Anthropic extended thinking through the gateway (litellm-translated), with the openai SDK:
the thinking reaches the client as `reasoning_content` only, under the team's output
rules, never in litellm's `thinking_blocks` or `provider_specific_fields`. Each answer's
raw bytes are searched, whole and streamed, cache hits included."""

from typing import Any

import orjson
import pytest

from tests.integration.providers.litellm_upstreams import (
    API_KEY,
    LITELLM_WARNINGS,
    THINKING_SIGNATURE,
    run_upstream,
)
from tests.support.gateway import RunningGateway, running_gateway

POLICY = """
providers:
  claude: {{type: anthropic, api_base: "{base}", api_key: "${{ANTHROPIC_TEST_KEY}}"}}
models:
  claude-haiku:
    deployments: [{{provider: claude, model: claude-3-5-haiku-20241022}}]
teams:
  guarded: {{models: ["*"], guardrails: [pii]}}
  cached: {{models: ["*"], guardrails: [pii], cache: {{ttl_s: 60, max_bytes: 100000}}}}
  strict: {{models: ["*"], guardrails: [no_secrets]}}
  open: {{models: ["*"]}}
guardrails:
  pii:
    output:
      - {{detector: credit_card, action: redact}}
      - {{detector: email, action: redact}}
  no_secrets:
    output:
      - {{detector: secrets, action: block}}
"""
CARD = "4111 1111 1111 1111"  # Luhn-valid test card
EMAIL = "bob@example.com"
THINKING = f"the card is {CARD} and {EMAIL}"
LEAKED_KEY = "AKIA" + "Z7Q2W9X4C6V8B1N3"  # an AWS access key id, made up here
LITELLM_ONLY = (b'"thinking_blocks"', b'"provider_specific_fields"', THINKING_SIGNATURE.encode())
ASK = "think, then say hi"

pytestmark = LITELLM_WARNINGS


@pytest.fixture
async def gateway(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", API_KEY)
    async with run_upstream("anthropic") as upstream:
        upstream.thinking = THINKING
        async with running_gateway(tmp_path, POLICY.format(base=upstream.base_url)) as gw:
            yield gw, upstream


async def whole(gw: RunningGateway, team: str, ask: str = ASK) -> tuple[bytes, str | None]:
    """A chat answer's raw body and its x-gateway-cache header."""
    client = await gw.openai(team)
    raw = await client.chat.completions.with_raw_response.create(
        model="claude-haiku", messages=[{"role": "user", "content": ask}], max_tokens=50
    )
    return raw.content, raw.headers.get("x-gateway-cache")


async def streamed(
    gw: RunningGateway, team: str, ask: str = ASK, endpoint: str = "chat"
) -> tuple[bytes, list[dict[str, Any]], str | None]:
    """A stream's raw bytes, each event's JSON (`[DONE]` aside) and its x-gateway-cache."""
    client = await gw.openai(team)
    if endpoint == "chat":
        opened = client.chat.completions.with_streaming_response.create(
            model="claude-haiku",
            messages=[{"role": "user", "content": ask}],
            max_tokens=50,
            stream=True,
        )
    else:
        opened = client.completions.with_streaming_response.create(
            model="claude-haiku", prompt=ask, max_tokens=50, stream=True
        )
    async with opened as response:
        raw = b"".join([part async for part in response.iter_bytes()])
        cache = response.headers.get("x-gateway-cache")
    events = [line[len(b"data: ") :] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    return raw, [orjson.loads(e) for e in events if e != b"[DONE]"], cache


def reasoning_of(events: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("reasoning_content") or ""
        for event in events
        for choice in event.get("choices") or ()
    )


def assert_no_litellm_fields(raw: bytes) -> None:
    for telltale in LITELLM_ONLY:
        assert telltale not in raw, telltale


async def test_a_whole_answer_carries_the_thinking_redacted_and_nowhere_else(gateway):
    """The card and the address appear nowhere in the body; `reasoning_content` has the
    thinking with both redacted; no thinking_blocks, provider_specific_fields or signature."""
    gw, _ = gateway
    raw, _ = await whole(gw, "guarded")
    assert CARD.encode() not in raw and EMAIL.encode() not in raw
    assert_no_litellm_fields(raw)
    message = orjson.loads(raw)["choices"][0]["message"]
    assert message["reasoning_content"] == (
        "the card is [REDACTED:credit_card] and [REDACTED:email]"
    )
    assert message["content"] == "Hello there"


async def test_a_stream_carries_the_thinking_redacted_and_nowhere_else(gateway):
    """No chunk holds the card or the address, in any field; the chunks' `reasoning_content`
    spells the thinking redacted; no chunk has litellm's fields."""
    gw, _ = gateway
    raw, events, _ = await streamed(gw, "guarded")
    assert CARD.encode() not in raw and EMAIL.encode() not in raw
    assert_no_litellm_fields(raw)
    assert reasoning_of(events) == "the card is [REDACTED:credit_card] and [REDACTED:email]"


async def test_a_completions_stream_does_not_carry_the_thinking(gateway):
    """A legacy completion has no reasoning field: litellm's `reasoning_content` on its
    choices, which no output rule reads, is not relayed."""
    gw, _ = gateway
    raw, events, _ = await streamed(gw, "guarded", endpoint="completions")
    assert CARD.encode() not in raw and EMAIL.encode() not in raw
    assert b"reasoning" not in raw
    assert_no_litellm_fields(raw)
    assert "".join(c["text"] or "" for e in events for c in e["choices"]) == "Hello there"


async def test_a_cache_hit_replays_the_answer_without_the_thinking_raw(gateway):
    """An answer cached from a whole miss, and one from a streamed miss, hold neither the
    card nor the address when served again, whole and streamed."""
    gw, upstream = gateway
    answers = []
    for ask, whole_first in (("first question", True), ("second question", False)):
        for is_whole in (whole_first, not whole_first, whole_first):
            if is_whole:
                raw, cache = await whole(gw, "cached", ask)
            else:
                raw, _, cache = await streamed(gw, "cached", ask)
            answers.append((raw, cache))
    assert [cache for _, cache in answers] == ["miss", "hit", "hit"] * 2
    assert len(upstream.seen) == 2
    for raw, _ in answers:
        assert CARD.encode() not in raw and EMAIL.encode() not in raw
        assert_no_litellm_fields(raw)


async def test_a_block_rule_ends_the_stream_before_the_thinking_leaves(gateway):
    """A secret in the thinking ends the stream with content_policy_violation; no byte of
    the key reaches the client first."""
    gw, upstream = gateway
    upstream.thinking = f"deploy with {LEAKED_KEY} now"
    raw, events, _ = await streamed(gw, "strict")
    assert LEAKED_KEY.encode() not in raw
    assert b"AKIA" not in raw
    assert events[-1]["error"]["code"] == "content_policy_violation"
    assert_no_litellm_fields(raw)


async def test_without_rules_the_thinking_is_reasoning_content_only(gateway):
    """A team with no output rules gets the thinking whole in `reasoning_content`, whole and
    streamed, and still no thinking_blocks or provider_specific_fields."""
    gw, _ = gateway
    raw, _ = await whole(gw, "open")
    assert_no_litellm_fields(raw)
    assert orjson.loads(raw)["choices"][0]["message"]["reasoning_content"] == THINKING
    raw, events, _ = await streamed(gw, "open")
    assert_no_litellm_fields(raw)
    assert reasoning_of(events) == THINKING
    assert "".join(c["delta"].get("content") or "" for e in events for c in e["choices"]) == (
        "Hello there"
    )
