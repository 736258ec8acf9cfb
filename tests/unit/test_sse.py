"""Splitting upstream byte streams into SSE events (gateway/sse.py)."""

import pytest

from gateway.providers.openai_compat import error_fields
from gateway.sse import EventSplitter, data_of, is_done, json_of

WIRE = b'data: {"a":1}\r\n\r\n: ping\r\n\r\nevent: x\r\ndata: {"b":2}\r\n\r\ndata: [DONE]\r\n\r\n'
EXPECTED = [
    b'data: {"a":1}\n\n',
    b": ping\n\n",
    b'event: x\ndata: {"b":2}\n\n',
    b"data: [DONE]\n\n",
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(WIRE)])
def test_events_come_out_whole_however_the_bytes_are_cut(size: int) -> None:
    splitter = EventSplitter()
    events = [e for i in range(0, len(WIRE), size) for e in splitter.feed(WIRE[i : i + size])]
    assert events == EXPECTED
    assert splitter.tail() is None


def test_a_last_event_without_its_blank_line_is_returned_at_the_end() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b'data: {"a":1}\n\ndata: [DONE]\r\n') == [b'data: {"a":1}\n\n']
    assert splitter.tail() == b"data: [DONE]\n\n"
    assert splitter.tail() is None


def test_data_done_and_json_in_their_legal_spellings() -> None:
    assert data_of(b'event: e\ndata:{"x": 1}\n\n') == b'{"x": 1}'
    assert data_of(b": ping\n\n") is None
    assert is_done(b"data:[DONE]\n\n") and is_done(b"data: [DONE]\n\n")
    assert not is_done(b'data: {"text":"[DONE]"}\n\n')
    assert json_of(b'data: {"x": 1}\n\n') == {"x": 1}
    assert json_of(b"data: [DONE]\n\n") is None and json_of(b"data: {broken\n\n") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"error": {"message": "m", "type": "t", "param": "p", "code": "c"}}', "m"),
        (b'{"object": "error", "message": "vllm says", "code": 400}', "vllm says"),
        (b'{"error": "tgi says", "error_type": "validation"}', "tgi says"),
        (b'{"detail": "fastapi says"}', "fastapi says"),
        (b'{"detail": [{"loc": ["body", "n"], "msg": "too big"}]}', "body.n: too big"),
        (b"plain words", "plain words"),
        (b"<html><body>502</body></html>", None),
        (b"[1, 2]", None),
        (b"", None),
    ],
)
def test_upstream_error_bodies_in_every_shape(raw: bytes, expected: str | None) -> None:
    assert error_fields(raw).get("message") == expected
