"""LitellmProvider against a loopback server speaking Anthropic's Messages API."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway.providers.base import UpstreamClientError, UpstreamFailure
from tests.integration.providers.litellm_upstreams import (
    API_KEY,
    LITELLM_WARNINGS,
    TRACEPARENT,
    USAGE_COUNTS,
    Deployment,
    read_sse,
    token_counts,
    traced,
    upstream_call,
)

pytestmark = LITELLM_WARNINGS

MODEL = "claude-test"
MESSAGES = [
    {"role": "system", "content": "Answer in two words."},
    {"role": "user", "content": "Greet me."},
]


def _anthropic_error(kind: str, message: str) -> dict[str, object]:
    return {"type": "error", "error": {"type": kind, "message": message}}


async def test_chat_request_is_translated_to_messages_api(anthropic: Deployment) -> None:
    """Anthropic gets its own wire shape: x-api-key, max_tokens, system moved out of messages."""
    await anthropic.provider.send(
        upstream_call(
            "chat",
            MODEL,
            {"messages": MESSAGES, "max_tokens": 50, "temperature": 0.2, "stop": ["\n"]},
        )
    )

    seen = anthropic.upstream.last
    assert (seen.method, seen.path) == ("POST", "/v1/messages")
    assert seen.headers["x-api-key"] == API_KEY
    assert "authorization" not in seen.headers
    assert seen.headers["anthropic-version"]
    assert seen.body["model"] == MODEL
    assert seen.body["max_tokens"] == 50
    assert seen.body["temperature"] == 0.2
    assert seen.body["stop_sequences"] == ["\n"]
    assert seen.body["system"] == [{"type": "text", "text": "Answer in two words."}]
    assert [m["role"] for m in seen.body["messages"]] == ["user"]
    assert "stream" not in seen.body


async def test_body_cannot_set_litellm_arguments(anthropic: Deployment) -> None:
    """A caller's body cannot redirect the call or fake the answer through litellm kwargs."""
    hostile = {
        "messages": MESSAGES,
        "api_base": "http://127.0.0.1:9/steal",
        "base_url": "http://127.0.0.1:9/steal",
        "mock_response": "faked",
        "extra_headers": {"x-api-key": "callers-key"},
    }
    reply = await anthropic.provider.send(upstream_call("chat", MODEL, hostile))

    assert orjson.loads(reply.body)["choices"][0]["message"]["content"] == "Hello there"
    assert len(anthropic.upstream.seen) == 1
    assert anthropic.upstream.last.headers["x-api-key"] == API_KEY


async def test_chat_stream_yields_chunks_usage_and_done(anthropic: Deployment) -> None:
    """A stream is OpenAI chunks with one id, then a usage chunk with no choices, then [DONE]."""
    events = await anthropic.provider.open_stream(
        upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=True)
    )
    chunks = await read_sse(events)

    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello there"
    assert chunks[-1]["choices"] == []
    assert token_counts(chunks[-1]["usage"]) == USAGE_COUNTS
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "stop"
    assert anthropic.upstream.last.body["stream"] is True


async def test_completions_are_served_through_messages(anthropic: Deployment) -> None:
    """A legacy completions call returns text_completion; Anthropic saw the prompt as a user turn."""
    reply = await anthropic.provider.send(
        upstream_call("completions", MODEL, {"prompt": "Say hello", "max_tokens": 5})
    )

    body = orjson.loads(reply.body)
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "Hello there"
    assert body["usage"]["total_tokens"] == USAGE_COUNTS[2]
    sent = anthropic.upstream.last.body
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Say hello"}]}
    ]
    assert sent["max_tokens"] == 5


async def test_completions_stream_yields_text_chunks_and_usage(anthropic: Deployment) -> None:
    """A streamed completions call yields text_completion chunks, usage, then [DONE]."""
    events = await anthropic.provider.open_stream(
        upstream_call("completions", MODEL, {"prompt": "Say hello"}, is_stream=True)
    )
    chunks = await read_sse(events)

    assert "".join(c["choices"][0]["text"] or "" for c in chunks if c["choices"]) == "Hello there"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == USAGE_COUNTS[2]


@pytest.mark.parametrize("is_stream", [False, True], ids=["send", "open_stream"])
async def test_rate_limit_is_a_failure_with_retry_after(
    anthropic: Deployment, is_stream: bool
) -> None:
    """A 429 with retry-after is an UpstreamFailure carrying the delay, raised before any byte."""
    anthropic.upstream.fail_next(
        429, _anthropic_error("rate_limit_error", "Too many requests"), {"retry-after": "7"}
    )
    call = upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=is_stream)

    with pytest.raises(UpstreamFailure) as caught:
        if is_stream:
            await anthropic.provider.open_stream(call)
        else:
            await anthropic.provider.send(call)

    assert caught.value.status == 429
    assert caught.value.retry_after_s == 7.0
    assert not caught.value.is_timeout


@pytest.mark.parametrize("status", [500, 529, 401, 403])
async def test_server_errors_and_refused_provider_key_are_failures(
    anthropic: Deployment, status: int
) -> None:
    """5xx, overload (529) and a refused provider key (401/403) are worth failing over."""
    anthropic.upstream.fail_next(status, _anthropic_error("api_error", "Internal error"))

    with pytest.raises(UpstreamFailure) as caught:
        await anthropic.provider.send(upstream_call("chat", MODEL, {"messages": MESSAGES}))

    assert caught.value.status is not None and caught.value.status >= 400
    assert API_KEY not in caught.value.detail


@pytest.mark.parametrize("is_stream", [False, True], ids=["send", "open_stream"])
async def test_bad_request_is_passed_back_clean(anthropic: Deployment, is_stream: bool) -> None:
    """A 400 comes back as the upstream's own message, without URLs, keys or litellm's prefix."""
    message = (
        f"messages.0: text content blocks must be non-empty; see "
        f"{anthropic.upstream.base_url}/docs?key={API_KEY} for details"
    )
    anthropic.upstream.fail_next(400, _anthropic_error("invalid_request_error", message))
    call = upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=is_stream)

    with pytest.raises(UpstreamClientError) as caught:
        if is_stream:
            await anthropic.provider.open_stream(call)
        else:
            await anthropic.provider.send(call)

    error = caught.value
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.message.startswith("messages.0: text content blocks must be non-empty; see ")
    for leak in ("http://", "127.0.0.1", API_KEY, "litellm", "AnthropicException"):
        assert leak not in error.message


async def test_prompt_too_long_has_context_length_code(anthropic: Deployment) -> None:
    """Anthropic's "prompt is too long" is a 400 with code context_length_exceeded."""
    anthropic.upstream.fail_next(
        400, _anthropic_error("invalid_request_error", "prompt is too long: 210000 tokens > 200000")
    )

    with pytest.raises(UpstreamClientError) as caught:
        await anthropic.provider.send(upstream_call("chat", MODEL, {"messages": MESSAGES}))

    assert caught.value.status == 400
    assert caught.value.code == "context_length_exceeded"
    assert "prompt is too long" in caught.value.message


async def test_cancelled_reader_closes_upstream_connection(anthropic: Deployment) -> None:
    """Cancelling the task reading a stream (a deadline) hangs up on the upstream."""
    anthropic.upstream.stream_forever = True
    events = await anthropic.provider.open_stream(
        upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=True)
    )

    async def read_all() -> None:
        async for _ in events:
            pass

    reader = asyncio.create_task(read_all())
    await asyncio.sleep(0.1)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader

    await asyncio.wait_for(anthropic.upstream.hung_up.wait(), timeout=5)


async def test_error_event_mid_stream_is_a_failure(anthropic: Deployment) -> None:
    """An `error` event after the stream started raises UpstreamFailure from the iterator."""
    anthropic.upstream.error_mid_stream = _anthropic_error("overloaded_error", "Overloaded")
    events = await anthropic.provider.open_stream(
        upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=True)
    )

    received = []
    with pytest.raises(UpstreamFailure) as caught:
        async for event in events:
            received.append(event)

    assert received and received[0].startswith(b"data: {")
    assert b"data: [DONE]\n\n" not in received
    assert API_KEY not in caught.value.detail


async def test_stream_cut_short_is_a_failure_not_done(anthropic: Deployment) -> None:
    """A body that ends before message_stop raises UpstreamFailure; no [DONE] is invented."""
    anthropic.upstream.ends_early = True
    events = await anthropic.provider.open_stream(
        upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=True)
    )

    received = []
    with pytest.raises(UpstreamFailure):
        async for event in events:
            received.append(event)

    assert received and b"data: [DONE]\n\n" not in received


async def test_a_request_without_max_tokens_gets_a_cap_every_claude_accepts(
    anthropic: Deployment,
) -> None:
    """OpenAI callers may omit max_tokens; Anthropic requires one, within the model's limit."""
    await anthropic.provider.send(upstream_call("chat", MODEL, {"messages": MESSAGES}))
    assert anthropic.upstream.last.body["max_tokens"] == 4096
    await anthropic.provider.send(
        upstream_call("chat", MODEL, {"messages": MESSAGES, "max_completion_tokens": 77})
    )
    assert anthropic.upstream.last.body["max_tokens"] == 77
    # Legacy completions too (litellm's own default, 128,000, is past most models' limit).
    await anthropic.provider.send(upstream_call("completions", MODEL, {"prompt": "Say hello"}))
    assert anthropic.upstream.last.body["max_tokens"] == 4096


async def test_several_choices_are_refused_not_silently_answered_with_one(
    anthropic: Deployment,
) -> None:
    requests_before = len(anthropic.upstream.seen)
    with pytest.raises(UpstreamClientError) as caught:
        await anthropic.provider.send(
            upstream_call("chat", MODEL, {"messages": MESSAGES, "max_tokens": 5, "n": 2})
        )
    assert (caught.value.status, caught.value.param) == (400, "n")
    assert len(anthropic.upstream.seen) == requests_before
    await anthropic.provider.send(
        upstream_call("chat", MODEL, {"messages": MESSAGES, "max_tokens": 5, "n": 1})
    )


async def test_a_traced_request_carries_our_traceparent_upstream(anthropic: Deployment) -> None:
    await anthropic.provider.send(upstream_call("chat", MODEL, {"messages": MESSAGES}))
    assert "traceparent" not in anthropic.upstream.last.headers  # untraced: nothing added
    with traced():
        await anthropic.provider.send(upstream_call("chat", MODEL, {"messages": MESSAGES}))
    seen = anthropic.upstream.last
    assert seen.headers["traceparent"] == TRACEPARENT
    assert seen.headers["x-api-key"] == API_KEY
