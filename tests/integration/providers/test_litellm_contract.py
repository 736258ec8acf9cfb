"""What every translated provider promises, checked once per provider kind.

Provider-specific wire details (paths, headers, error shapes) stay in each
provider's own test file.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.integration.providers.litellm_upstreams import (
    LITELLM_WARNINGS,
    USAGE_COUNTS,
    Deployment,
    token_counts,
    upstream_call,
)

pytestmark = LITELLM_WARNINGS

MESSAGES = [
    {"role": "system", "content": "Answer in two words."},
    {"role": "user", "content": "Greet me."},
]
MODELS = {  # models litellm routes as chat models for each kind
    "anthropic": "claude-test",
    "gemini": "gemini-2.5-flash",
    "bedrock": "anthropic.claude-3-haiku-20240307-v1:0",
}
REPORTED = {"gemini": "gemini-test"}  # Gemini names its own `modelVersion`; the others echo


@pytest.fixture(params=sorted(MODELS))
def deployment(request: pytest.FixtureRequest) -> tuple[Deployment, str, str]:
    """Each kind's mock upstream and provider, a model it serves, the model it reports."""
    kind = request.param
    return request.getfixturevalue(kind), MODELS[kind], REPORTED.get(kind, MODELS[kind])


async def test_chat_returns_openai_completion_with_usage(
    deployment: tuple[Deployment, str, str],
) -> None:
    """A chat call comes back as an OpenAI chat.completion with the upstream's usage."""
    provider, model, reported = deployment
    reply = await provider.provider.send(
        upstream_call("chat", model, {"messages": MESSAGES, "max_tokens": 50})
    )

    body = orjson.loads(reply.body)
    assert reply.status == 200
    assert body["object"] == "chat.completion"
    assert body["model"] == reported
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"] == "Hello there"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert token_counts(body["usage"]) == USAGE_COUNTS


async def test_closing_stream_early_closes_upstream_connection(
    deployment: tuple[Deployment, str, str],
) -> None:
    """aclose() after the first event hangs up on the upstream at once."""
    provider, model, _ = deployment
    provider.upstream.stream_forever = True
    events = await provider.provider.open_stream(
        upstream_call("chat", model, {"messages": MESSAGES}, is_stream=True)
    )
    first = await anext(events)
    assert first.startswith(b"data: {")

    await events.aclose()  # type: ignore[attr-defined]  # the relay is closable

    await asyncio.wait_for(provider.upstream.hung_up.wait(), timeout=5)
    with pytest.raises(StopAsyncIteration):
        await anext(events)
