"""The built-in mock provider, called directly (no gateway, no sockets)."""

import orjson
import pytest

from gateway.providers.base import UpstreamCall, UpstreamClientError
from gateway.providers.mock import MockProvider
from gateway.providers.mock_reply import MAX_CHOICES


def call(endpoint, body, is_stream=False):
    return UpstreamCall(endpoint, body, "mock-1", is_stream, "req_1")


async def test_too_many_choices_are_refused_before_any_is_written():
    """A prompt list times n past MAX_CHOICES is a 400 naming `n`, whole or streamed."""
    prompts = ["x"] * (MAX_CHOICES // 128 + 1)
    body = {"model": "mock-1", "prompt": prompts, "n": 128}
    mock = MockProvider("demo")
    with pytest.raises(UpstreamClientError) as whole:
        await mock.send(call("completions", body))
    with pytest.raises(UpstreamClientError) as streamed:
        await mock.open_stream(call("completions", {**body, "stream": True}, is_stream=True))
    assert whole.value.status == streamed.value.status == 400
    assert whole.value.param == "n"


async def test_streamed_choices_interleave_one_choice_a_chunk():
    """Word j of every choice, then word j + 1; each chunk holds one choice."""
    body = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "n": 2}
    stream = await MockProvider("demo").open_stream(call("chat", body, is_stream=True))
    events = [event async for event in stream]
    chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    indices = [c["choices"][0]["index"] for c in chunks]
    assert all(len(c["choices"]) == 1 for c in chunks)
    assert indices[:4] == [0, 1, 0, 1]
    assert [c["choices"][0]["finish_reason"] for c in chunks[-2:]] == ["stop", "stop"]
    assert events[-1] == b"data: [DONE]\n\n"
