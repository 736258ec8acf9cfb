"""LitellmProvider against a loopback server speaking Bedrock's Converse API.

converse-stream answers in AWS event-stream binary framing, built by
`eventstream_frame` in the mock.
"""

from __future__ import annotations

import orjson
import pytest

from gateway.providers.base import UpstreamClientError, UpstreamFailure
from tests.integration.providers.litellm_upstreams import (
    AWS,
    EMBEDDING,
    LITELLM_WARNINGS,
    USAGE_COUNTS,
    Deployment,
    read_sse,
    token_counts,
    upstream_call,
)

pytestmark = LITELLM_WARNINGS

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
EMBEDDER = "amazon.titan-embed-text-v2:0"
MESSAGES = [
    {"role": "system", "content": "Answer in two words."},
    {"role": "user", "content": "Greet me."},
]


async def test_chat_request_is_signed_converse(bedrock: Deployment) -> None:
    """Bedrock gets /model/{id}/converse, SigV4-signed for the region, system moved out."""
    await bedrock.provider.send(
        upstream_call("chat", MODEL, {"messages": MESSAGES, "max_tokens": 20, "temperature": 0.5})
    )

    seen = bedrock.upstream.last
    assert seen.path == f"/model/{MODEL}/converse"
    authorization = seen.headers["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/")
    assert "/us-east-1/bedrock/aws4_request" in authorization
    assert all(AWS["aws_secret_access_key"] not in value for value in seen.headers.values())
    assert seen.body["system"] == [{"text": "Answer in two words."}]
    assert seen.body["messages"] == [{"role": "user", "content": [{"text": "Greet me."}]}]
    assert seen.body["inferenceConfig"] == {"maxTokens": 20, "temperature": 0.5}


async def test_chat_stream_decodes_event_stream(bedrock: Deployment) -> None:
    """converse-stream's binary events come back as OpenAI chunks, a usage chunk, then [DONE]."""
    events = await bedrock.provider.open_stream(
        upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=True)
    )
    chunks = await read_sse(events)

    assert bedrock.upstream.last.path == f"/model/{MODEL}/converse-stream"
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello there"
    assert chunks[-1]["choices"] == []
    assert token_counts(chunks[-1]["usage"]) == USAGE_COUNTS


async def test_completions_are_served_through_converse(bedrock: Deployment) -> None:
    """A legacy completions call returns text_completion from a Converse call."""
    reply = await bedrock.provider.send(
        upstream_call("completions", MODEL, {"prompt": "Say hello", "max_tokens": 5})
    )

    body = orjson.loads(reply.body)
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "Hello there"
    assert bedrock.upstream.last.path == f"/model/{MODEL}/converse"
    assert bedrock.upstream.last.body["messages"] == [
        {"role": "user", "content": [{"text": "Say hello"}]}
    ]


async def test_embeddings_invoke_titan_once_per_input(bedrock: Deployment) -> None:
    """Titan embeds one text per invoke call; the reply is one OpenAI embedding list."""
    reply = await bedrock.provider.send(
        upstream_call("embeddings", EMBEDDER, {"input": ["one", "two"]})
    )

    body = orjson.loads(reply.body)
    assert [(d["index"], d["embedding"]) for d in body["data"]] == [(0, EMBEDDING), (1, EMBEDDING)]
    assert body["usage"]["prompt_tokens"] == 4
    assert [(s.path, s.body) for s in bedrock.upstream.seen] == [
        (f"/model/{EMBEDDER}/invoke", {"inputText": "one"}),
        (f"/model/{EMBEDDER}/invoke", {"inputText": "two"}),
    ]


@pytest.mark.parametrize("is_stream", [False, True], ids=["send", "open_stream"])
async def test_throttling_is_a_failure_with_retry_after(
    bedrock: Deployment, is_stream: bool
) -> None:
    """A 429 ThrottlingException is an UpstreamFailure, with the retry-after it carried."""
    bedrock.upstream.fail_next(
        429,
        {"message": "Too many requests, please wait before trying again."},
        {"x-amzn-ErrorType": "ThrottlingException", "retry-after": "2"},
    )
    call = upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=is_stream)

    with pytest.raises(UpstreamFailure) as caught:
        if is_stream:
            await bedrock.provider.open_stream(call)
        else:
            await bedrock.provider.send(call)

    assert caught.value.status == 429
    assert caught.value.retry_after_s == 2.0


async def test_server_error_is_a_failure(bedrock: Deployment) -> None:
    """A 500 from Bedrock is worth failing over."""
    bedrock.upstream.fail_next(
        500, {"message": "Internal server error"}, {"x-amzn-ErrorType": "InternalServerException"}
    )

    with pytest.raises(UpstreamFailure) as caught:
        await bedrock.provider.send(upstream_call("chat", MODEL, {"messages": MESSAGES}))

    assert caught.value.status is not None and caught.value.status >= 500


async def test_validation_error_is_passed_back_clean(bedrock: Deployment) -> None:
    """A 400 ValidationException comes back as Bedrock's message, without URL or prefix."""
    message = f"Malformed input request, see {bedrock.upstream.base_url}/model/x for the schema"
    bedrock.upstream.fail_next(
        400, {"message": message}, {"x-amzn-ErrorType": "ValidationException"}
    )

    with pytest.raises(UpstreamClientError) as caught:
        await bedrock.provider.send(upstream_call("chat", MODEL, {"messages": MESSAGES}))

    assert caught.value.status == 400
    assert caught.value.message == "Malformed input request, see [url] for the schema"


async def test_exception_event_mid_stream_is_a_failure(bedrock: Deployment) -> None:
    """A throttlingException message inside converse-stream raises UpstreamFailure, no [DONE]."""
    bedrock.upstream.error_mid_stream = {"message": "Too many tokens, please wait."}
    events = await bedrock.provider.open_stream(
        upstream_call("chat", MODEL, {"messages": MESSAGES}, is_stream=True)
    )

    received = []
    with pytest.raises(UpstreamFailure) as caught:
        async for event in events:
            received.append(event)

    assert caught.value.status == 429
    assert received and b"data: [DONE]\n\n" not in received


async def test_a_traced_request_carries_our_traceparent_upstream(bedrock: Deployment) -> None:
    """Added to the signed request's headers (AWS checks only the headers it signed)."""
    from tests.integration.providers.litellm_upstreams import TRACEPARENT, traced

    with traced():
        await bedrock.provider.send(upstream_call("chat", MODEL, {"messages": MESSAGES}))
    seen = bedrock.upstream.last
    assert seen.headers["traceparent"] == TRACEPARENT
    assert seen.headers["authorization"].startswith("AWS4-HMAC-SHA256")
