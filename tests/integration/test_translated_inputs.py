"""What OpenAI clients send to a litellm-translated model (Anthropic, Gemini), and what
they get back, through the gateway with the openai SDK: token ids, prompt batches, usage,
litellm's refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from tests.integration.providers.litellm_upstreams import (
    API_KEY,
    LITELLM_WARNINGS,
    MockUpstream,
    run_upstream,
)
from tests.support.gateway import RunningGateway, running_gateway

POLICY = """
providers:
  claude: {{type: anthropic, api_base: "{anthropic}", api_key: "${{TRANSLATED_TEST_KEY}}"}}
  gem: {{type: gemini, api_base: "{gemini}", api_key: "${{TRANSLATED_TEST_KEY}}"}}
models:
  claude-haiku:
    deployments: [{{provider: claude, model: claude-3-5-haiku-20241022}}]
  gemini-embed:
    deployments: [{{provider: gem, model: text-embedding-004}}]
teams:
  demo: {{models: ["*"]}}
"""
HELLO_WORLD = [15339, 1917]  # "hello world" in cl100k_base, what LangChain encodes with
# OpenAI's usage fields (the SDK's CompletionUsage), and the cache writes the gateway bills.
OPENAI_USAGE = {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
                "completion_tokens_details", "cache_creation_input_tokens"}  # fmt: skip

pytestmark = LITELLM_WARNINGS


@dataclass
class Setup:
    gateway: RunningGateway
    client: openai.AsyncOpenAI
    anthropic: MockUpstream
    gemini: MockUpstream


@asynccontextmanager
async def translated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    monkeypatch.setenv("TRANSLATED_TEST_KEY", API_KEY)
    async with run_upstream("anthropic") as claude, run_upstream("gemini") as gem:
        policy = POLICY.format(anthropic=claude.base_url, gemini=gem.base_url)
        async with running_gateway(tmp_path, policy) as gw:
            yield Setup(gw, await gw.openai(max_retries=0), claude, gem)


def user_text(seen: MockUpstream) -> str:
    """The text of the one user message the Anthropic mock last received."""
    (message,) = seen.last.body["messages"]
    content = message["content"]
    return content if isinstance(content, str) else "".join(p["text"] for p in content)


async def test_langchains_token_id_embeddings_reach_gemini_as_text(tmp_path, monkeypatch):
    """LangChain's OpenAIEmbeddings sends token ids: Gemini gets their text, the client one
    vector per input."""
    async with translated(tmp_path, monkeypatch) as s:
        reply = await s.client.embeddings.create(
            model="gemini-embed", input=[HELLO_WORLD, [15339]], encoding_format="float"
        )
        texts = [r["content"]["parts"][0]["text"] for r in s.gemini.last.body["requests"]]
    assert [d.index for d in reply.data] == [0, 1]
    assert texts == ["hello world", "hello"]


async def test_a_token_id_prompt_is_completed_from_its_text(tmp_path, monkeypatch):
    """A completions prompt of token ids reaches Anthropic as the text they encode."""
    async with translated(tmp_path, monkeypatch) as s:
        reply = await s.client.completions.create(
            model="claude-haiku", prompt=HELLO_WORLD, max_tokens=5
        )
        assert user_text(s.anthropic) == "hello world"
    assert reply.choices[0].text == "Hello there"


async def test_unreadable_ids_are_the_callers_400_and_cool_nothing(tmp_path, monkeypatch):
    """Ids no encoding reads: 400 naming the field, no upstream call, and the deployment
    still answers the next request at once (no failover, no cooldown)."""
    async with translated(tmp_path, monkeypatch) as s:
        for _ in range(3):
            with pytest.raises(openai.BadRequestError) as refused:
                await s.client.completions.create(
                    model="claude-haiku", prompt=[HELLO_WORLD, [4_000_000]], max_tokens=5
                )
            assert refused.value.body["param"] == "prompt[1]"
            assert refused.value.body["type"] == "invalid_request_error"
        assert s.anthropic.seen == []
        reply = await s.client.completions.create(
            model="claude-haiku", prompt="hello", max_tokens=5
        )
    assert reply.choices[0].text == "Hello there"


@pytest.mark.parametrize("prompt", [["a", "b", "c"], [HELLO_WORLD, HELLO_WORLD]])
async def test_a_batch_of_prompts_is_refused_not_answered_once(tmp_path, monkeypatch, prompt):
    """OpenAI answers each prompt of a batch; Anthropic through litellm would answer one:
    refused, naming `prompt`, before any upstream call."""
    async with translated(tmp_path, monkeypatch) as s:
        with pytest.raises(openai.BadRequestError) as refused:
            await s.client.completions.create(model="claude-haiku", prompt=prompt, max_tokens=5)
        assert s.anthropic.seen == []
    assert refused.value.body["param"] == "prompt"
    assert "one prompt per request" in refused.value.body["message"]


async def test_usage_carries_openais_counts_not_litellms_price(tmp_path, monkeypatch):
    """Whole and streamed answers' usage has OpenAI's fields: no litellm `cost` to
    contradict x-gateway-cost-usd, no Anthropic cache spellings."""
    async with translated(tmp_path, monkeypatch) as s:
        raw = await s.client.chat.completions.with_raw_response.create(
            model="claude-haiku", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
        stream = await s.client.chat.completions.create(
            model="claude-haiku",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
        embedded = await s.client.embeddings.with_raw_response.create(
            model="gemini-embed", input="hi", encoding_format="float"
        )
    whole = raw.http_response.json()["usage"]
    streamed = chunks[-1].usage.model_dump(exclude_unset=True)
    for usage in (whole, streamed):
        assert set(usage) <= OPENAI_USAGE, usage
        assert usage["prompt_tokens"] == 12 and usage["completion_tokens"] == 3
        for details in ("prompt_tokens_details", "completion_tokens_details"):
            assert None not in usage.get(details, {}).values(), usage  # litellm's nulls
    assert raw.headers["x-gateway-cost-usd"]
    assert set(embedded.http_response.json()["usage"]) == {"prompt_tokens", "total_tokens"}


async def test_litellms_refusal_reaches_the_caller_without_litellms_words(tmp_path, monkeypatch):
    """A chat of a system message alone: Anthropic's reason, not litellm's settings."""
    async with translated(tmp_path, monkeypatch) as s:
        with pytest.raises(openai.BadRequestError) as refused:
            await s.client.chat.completions.create(
                model="claude-haiku", messages=[{"role": "system", "content": "be brief"}]
            )
    message = refused.value.body["message"]
    assert message.startswith("Anthropic requires at least one non-system message.")
    assert "litellm" not in message.lower()


async def test_gemini_embeddings_are_counted_per_input_and_marked_estimated(tmp_path, monkeypatch):
    """Gemini reports no embedding usage: the caller is charged the gateway's own count of
    each input (100 inputs of "x": 100 tokens, not litellm's 13 for them joined), marked
    estimated."""
    async with translated(tmp_path, monkeypatch) as s:
        raw = await s.client.embeddings.with_raw_response.create(
            model="gemini-embed", input=["x"] * 100, encoding_format="float"
        )
    assert raw.http_response.json()["usage"] == {"prompt_tokens": 100, "total_tokens": 100}
    assert raw.headers["x-gateway-tokens-estimated"] == "true"


@pytest.mark.parametrize(
    ("sent", "param"),
    [
        (["hello", "data:image/png;base64,iVBORw0KGgo="], "input[1]"),
        ("data:image/png;base64,iVBORw0KGgo=", "input"),
        (["files/abc123"], "input[0]"),
        (["gs://bucket/cat.png"], "input[0]"),
    ],
)
async def test_gemini_image_embeddings_are_refused_not_free(tmp_path, monkeypatch, sent, param):
    """An image or file to embed, for which Gemini reports no tokens (litellm: 0, free), is
    the caller's 400 naming it, with no upstream call."""
    async with translated(tmp_path, monkeypatch) as s:
        with pytest.raises(openai.BadRequestError) as refused:
            await s.client.embeddings.create(
                model="gemini-embed", input=sent, encoding_format="float"
            )
        assert s.gemini.seen == []
    assert refused.value.body["param"] == param
    assert refused.value.body["type"] == "invalid_request_error"
