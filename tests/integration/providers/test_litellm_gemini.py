"""LitellmProvider against a loopback server speaking Gemini's (AI Studio) REST API."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from gateway.providers.base import UpstreamClientError, UpstreamFailure
from tests.integration.providers.litellm_upstreams import (
    API_KEY,
    EMBEDDING,
    LITELLM_WARNINGS,
    USAGE_COUNTS,
    Deployment,
    read_sse,
    upstream_call,
)

pytestmark = LITELLM_WARNINGS

MODEL = "gemini-2.5-flash"  # a model litellm knows takes a system instruction
EMBEDDER = "text-embedding-004"
MESSAGES = [
    {"role": "system", "content": "Answer in two words."},
    {"role": "user", "content": "Greet me."},
]


def _google_error(status: int, state: str, message: str, *details: object) -> dict[str, object]:
    return {
        "error": {"code": status, "message": message, "status": state, "details": list(details)}
    }


async def test_chat_request_is_translated_to_generate_content(gemini: Deployment) -> None:
    """Gemini gets generateContent under api_base, the key in a header, system as an instruction."""
    await gemini.provider.send(
        upstream_call("chat", MODEL, {"messages": MESSAGES, "max_tokens": 7, "temperature": 0.1})
    )

    seen = gemini.upstream.last
    assert seen.path == f"/models/{MODEL}:generateContent"
    assert seen.headers["x-goog-api-key"] == API_KEY
    assert API_KEY not in str(seen.query)
    assert seen.body["system_instruction"] == {"parts": [{"text": "Answer in two words."}]}
    assert seen.body["contents"] == [{"role": "user", "parts": [{"text": "Greet me."}]}]
    assert seen.body["generationConfig"]["max_output_tokens"] == 7
    assert seen.body["generationConfig"]["temperature"] == 0.1


async def test_chat_stream_yields_chunks_usage_and_done(gemini: Deployment) -> None:
    """streamGenerateContent?alt=sse comes back as OpenAI chunks with one id, usage, [DONE]."""
    events = await gemini.provider.open_stream(
        upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=True)
    )
    chunks = await read_sse(events)

    seen = gemini.upstream.last
    assert seen.path == f"/models/{MODEL}:streamGenerateContent"
    assert seen.query == {"alt": "sse"}
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello there"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == USAGE_COUNTS[2]


async def test_embeddings_use_batch_embed_contents(gemini: Deployment) -> None:
    """Several inputs are one batchEmbedContents call; the reply is an OpenAI embedding list."""
    reply = await gemini.provider.send(
        upstream_call("embeddings", EMBEDDER, {"input": ["one", "two"], "dimensions": 3})
    )

    body = orjson.loads(reply.body)
    assert body["object"] == "list"
    assert [(d["object"], d["index"], d["embedding"]) for d in body["data"]] == [
        ("embedding", 0, EMBEDDING),
        ("embedding", 1, EMBEDDING),
    ]
    assert "usage" not in body  # Gemini reports none: the gateway counts the inputs
    seen = gemini.upstream.last
    assert seen.path == f"/models/{EMBEDDER}:batchEmbedContents"
    assert [r["content"]["parts"][0]["text"] for r in seen.body["requests"]] == ["one", "two"]
    assert seen.body["requests"][0]["outputDimensionality"] == 3


async def test_embeddings_honour_base64_encoding(gemini: Deployment) -> None:
    """encoding_format=base64 (the openai SDK's default) gets little-endian float32 base64."""
    reply = await gemini.provider.send(
        upstream_call("embeddings", EMBEDDER, {"input": "one", "encoding_format": "base64"})
    )

    encoded = orjson.loads(reply.body)["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(EMBEDDING)}f", base64.b64decode(encoded))
    assert list(decoded) == EMBEDDING


async def test_rate_limit_takes_retry_delay_from_body(gemini: Deployment) -> None:
    """Gemini's 429 has no retry-after header; the RetryInfo delay in its body is used."""
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}
    gemini.upstream.fail_next(
        429, _google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", retry_info)
    )

    with pytest.raises(UpstreamFailure) as caught:
        await gemini.provider.send(upstream_call("chat", MODEL, {"messages": MESSAGES}))

    assert caught.value.status == 429
    assert caught.value.retry_after_s == 37.0


@pytest.mark.parametrize("is_stream", [False, True], ids=["send", "open_stream"])
async def test_invalid_provider_key_is_a_failure_not_callers_fault(
    gemini: Deployment, is_stream: bool
) -> None:
    """Gemini answers a bad key with 400 API_KEY_INVALID: ours to fail over, not the caller's 400."""
    reason = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
    gemini.upstream.fail_next(
        400, _google_error(400, "INVALID_ARGUMENT", "API key not valid.", reason)
    )
    call = upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=is_stream)

    with pytest.raises(UpstreamFailure) as caught:
        if is_stream:
            await gemini.provider.open_stream(call)
        else:
            await gemini.provider.send(call)

    assert caught.value.status in (400, 401)
    assert API_KEY not in caught.value.detail


async def test_stream_refusal_raises_from_open_stream(gemini: Deployment) -> None:
    """Gemini opens its stream lazily; a 503 still raises from open_stream, before any byte."""
    gemini.upstream.fail_next(503, _google_error(503, "UNAVAILABLE", "The model is overloaded."))

    with pytest.raises(UpstreamFailure) as caught:
        await gemini.provider.open_stream(
            upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=True)
        )

    assert caught.value.status is not None and caught.value.status >= 500


@pytest.mark.parametrize("is_stream", [False, True], ids=["send", "open_stream"])
async def test_bad_request_is_passed_back_clean(gemini: Deployment, is_stream: bool) -> None:
    """A 400 comes back as Gemini's own message, without URL, key or litellm's prefix."""
    message = f"* GenerateContentRequest.contents: must not be empty ({gemini.upstream.base_url})"
    gemini.upstream.fail_next(400, _google_error(400, "INVALID_ARGUMENT", message))
    call = upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=is_stream)

    with pytest.raises(UpstreamClientError) as caught:
        if is_stream:
            await gemini.provider.open_stream(call)
        else:
            await gemini.provider.send(call)

    assert caught.value.status == 400
    assert caught.value.message.startswith("* GenerateContentRequest.contents: must not be empty")
    for leak in ("http://", "127.0.0.1", "litellm", "Exception"):
        assert leak not in caught.value.message


@pytest.mark.parametrize("is_stream", [False, True], ids=["send", "open_stream"])
@pytest.mark.parametrize(
    "message",
    [
        "Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': "
        "Cannot find field.",
        "The input token count (1200000) exceeds the maximum number of tokens allowed "
        "(1048576). Entrée trop longue.",
    ],
    ids=["quotes", "context length, non-ASCII"],
)
async def test_a_message_with_quotes_or_accents_is_passed_back_as_written(
    gemini: Deployment, is_stream: bool, message: str
) -> None:
    """Streamed, litellm quotes the body as a Python bytes repr (`b'{...\\"foo\\"...}'`):
    the caller still gets Gemini's message as written, never the repr or litellm's
    exception names (probes p24, p25)."""
    gemini.upstream.fail_next(400, _google_error(400, "INVALID_ARGUMENT", message))
    call = upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=is_stream)

    with pytest.raises(UpstreamClientError) as caught:
        if is_stream:
            await gemini.provider.open_stream(call)
        else:
            await gemini.provider.send(call)

    assert caught.value.message == message


async def test_stream_cut_short_is_a_failure_not_a_made_up_stop(gemini: Deployment) -> None:
    """A stream that ends before a chunk with Gemini's finishReason (the connection
    closed) raises UpstreamFailure: litellm's invented `stop` and [DONE] never go out
    (probe p24: the client saw a complete answer, the ledger 0 output tokens)."""
    gemini.upstream.ends_early = True
    events = await gemini.provider.open_stream(
        upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=True)
    )

    received = []
    with pytest.raises(UpstreamFailure):
        async for event in events:
            received.append(event)

    assert received and b"Hello" in received[0]
    assert not any(b'"finish_reason":"stop"' in event for event in received)
    assert b"data: [DONE]\n\n" not in received
