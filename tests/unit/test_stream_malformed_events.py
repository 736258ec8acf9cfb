"""Events a client could not parse, cut before (providers/stream_start.py `readable_part`);
usage sent after an upstream's error event, learned and never relayed (stream/relay.py,
usage_observer.py); litellm's error chunks end its stream as the openai-compatible
provider's do (providers/litellm_adapter.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.providers.base import UpstreamFailure
from gateway.providers.litellm_adapter import _SseRelay
from gateway.providers.stream_start import readable_part
from gateway.stream.relay import relay
from gateway.stream.steps import Chain
from gateway.stream.usage_observer import UsageObserver
from tests.unit.stream.test_relay import Scripted, Sent

GOOD = b'data: {"id":"c","object":"chat.completion.chunk","choices":[]}\n\n'
RESPONSES = b'event: response.output_text.delta\ndata: {"type":"x","delta":"a"}\n\n'
USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'


@pytest.mark.parametrize(
    "event",
    [
        b"data: {garbage\n\n",
        b'data: {"id":\n\n',
        b'data: {"id":"c","choices":[{"delta\n\n',
        b"data: {garbage}\n\n",
        b"data: {'id': 'c'}\n\n",
        b"data: <html>502</html>\n\n",
        b"data: 42\n\n",
        b"data: [1, 2]\n\n",
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.del\n\n',
    ],
)
def test_an_event_that_cannot_be_a_json_object_cuts_the_chunk_before_it(event):
    assert readable_part(event) == (b"", True)
    assert readable_part(GOOD + event + GOOD) == (GOOD, True)
    assert readable_part(RESPONSES + event) == (RESPONSES, True)


@pytest.mark.parametrize(
    "chunk",
    [
        GOOD,
        RESPONSES,
        b"data: [DONE]\n\n",
        b"data:[DONE]\n\n",
        b"data: [DONE] \n\n",
        b": ping\n\n",
        b'data: { "id" : "c" } \n\n',
        b"data: {}\n\n",
        b'data: {"id":"c",\ndata: "choices":[]}\n\n',  # one payload over two data lines
        b'event: error\ndata: {"type":"error","message":"x"}\n\n',
        GOOD + b": ping\n\n" + GOOD + b"data: [DONE]\n\n",
    ],
)
def test_readable_events_pass_as_they_are(chunk):
    out, cut = readable_part(chunk)
    assert out is chunk and not cut


def test_empty_data_events_are_dropped_not_a_failure():
    assert readable_part(b"data:\n\n") == (b"", False)
    assert readable_part(GOOD + b"data: \n\n" + GOOD + b"data:\n\n") == (GOOD + GOOD, False)


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
        max_size=6,
    ),
    st.sampled_from([b"data: ", b"data:", b"event: x\ndata: "]),
)
def test_any_json_object_is_readable(payload: dict[str, Any], head: bytes):
    event = head + orjson.dumps(payload) + b"\n\n"
    assert readable_part(event) == (event, False)


def test_the_usage_observer_learns_usage_it_does_not_relay():
    observer = UsageObserver("chat", client_wants_usage=True, body={}, model="m")
    Chain([observer]).learn(b"data: {garbage\n\n" + USAGE + b"data: [DONE]\n\n")
    assert observer.reported is not None
    assert (observer.reported.input_tokens, observer.reported.output_tokens) == (7, 3)


async def test_the_relay_books_usage_sent_after_the_upstreams_error_but_sends_none_of_it():
    error = b'data: {"error":{"message":"boom"}}\n\n'
    failure = UpstreamFailure("stream ended on its error", told_client=True, after=USAGE)
    upstream, sent = Scripted(error, failure), Sent()
    observer = UsageObserver("chat", client_wants_usage=True, body={}, model="m")
    end = await relay(GOOD, upstream, Chain([observer]), sent, idle_timeout_s=5, deadline_in_s=5)
    assert end.failure is failure and end.error is not None
    assert b"usage" not in b"".join(w.replace(b'"usage":null', b"") for w in sent.writes)
    assert sent.writes[-1] == error  # no second error event: the client has the upstream's
    assert observer.reported is not None and observer.reported.output_tokens == 3


# --- litellm: an error chunk ends the stream as openai_compat's error event does ---------


class Chunk:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def model_dump(self, **_: Any) -> dict[str, Any]:
        return dict(self.body)


class LitellmStream:
    def __init__(self, *chunks: Chunk) -> None:
        self.chunks = list(chunks)
        self.closed = False

    def __aiter__(self) -> LitellmStream:
        return self

    async def __anext__(self) -> Chunk:
        if not self.chunks:
            raise StopAsyncIteration
        return self.chunks.pop(0)

    async def aclose(self) -> None:
        self.closed = True


TEXT = Chunk({"id": "c", "choices": [{"index": 0, "delta": {"content": "Hi"}}]})
FAILED = Chunk({"error": {"message": "overloaded, key sk-secretsecret1234", "type": "x"}})


async def test_a_litellm_error_chunk_mid_stream_is_its_last_event_then_a_told_failure():
    stream = LitellmStream(FAILED, TEXT)
    relayed = _SseRelay(stream, TEXT, ("sk-secretsecret1234",))
    assert b"Hi" in await anext(relayed)
    error = await anext(relayed)
    assert orjson.loads(error[len(b"data: ") :])["error"]["message"].startswith("overloaded")
    assert b"sk-secret" not in error
    with pytest.raises(UpstreamFailure) as raised:
        await anext(relayed)
    assert raised.value.told_client and stream.closed


async def test_a_litellm_stream_that_begins_with_an_error_fails_the_attempt():
    stream = LitellmStream(TEXT)
    relayed = _SseRelay(stream, FAILED, ())
    with pytest.raises(UpstreamFailure) as raised:
        await anext(relayed)
    assert not raised.value.told_client and stream.closed
