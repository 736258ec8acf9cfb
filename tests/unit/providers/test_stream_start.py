"""Which first events fail a stream's attempt (gateway/providers/stream_start.py)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.providers.stream_start import failed_start

CHUNK = b'data: {"id":"c","object":"chat.completion.chunk","choices":[]}\n\n'


@pytest.mark.parametrize(
    "first",
    [
        b'data: {"error":{"message":"x","type":"server_error"}}\n\n',
        b'data:{"error":"model is loading"}\n\n',
        b'event: error\ndata: {"type":"error","code":"server_error","message":"x"}\n\n',
        b'data: {"type":"error","message":"x"}\n\n',
        b'data: {"id":"c","choices":[{"delta\n\n',
        b"data: <html>502</html>\n\n",
        b"data: [1, 2]\n\n",
        b'data: {"error":{"message":"x"}}\n\n' + CHUNK,  # the first event decides
        b"data: [DONE]\n\n",  # an end before any event: nothing was answered
    ],
)
def test_an_error_or_not_json_first_event_fails_the_attempt(first):
    assert failed_start(first) is not None


@pytest.mark.parametrize(
    "first",
    [
        CHUNK,
        CHUNK + b'data: {"error":{"message":"later"}}\n\n',  # later events are the relay's
        b'data: {"id":"c","error":null,"choices":[]}\n\n',
        b'event: response.created\ndata: {"type":"response.created","response":{"error":null}}\n\n',
        b": keep-alive\n\n",
        b'data: {"id":"c",\ndata: "choices":[]}\n\n',  # one payload over two data lines
    ],
)
def test_an_ordinary_first_event_does_not(first):
    assert failed_start(first) is None


@given(st.dictionaries(st.sampled_from(["id", "object", "choices", "model", "usage"]), st.none()))
def test_any_json_object_without_an_error_passes(payload):
    assert failed_start(b"data: " + orjson.dumps(payload) + b"\n\n") is None


def test_the_upstreams_error_object_is_kept_for_the_log_summary():
    failed = failed_start(b'data: {"error":{"type":"server_error","code":"overloaded"}}\n\n')
    assert failed is not None and failed.error == {"type": "server_error", "code": "overloaded"}
