"""Splitting upstream byte streams into SSE events (gateway/sse.py)."""

import pytest

from gateway.providers.openai_compat import error_fields
from gateway.sse import (
    EventSplitter,
    data_of,
    end_of_done,
    end_of_failure,
    ends_on_error,
    events_of,
    from_first_data,
    is_done,
    json_of,
)

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
    chunks = [splitter.feed(WIRE[i : i + size]) for i in range(0, len(WIRE), size)]
    assert [e for chunk in chunks for e in events_of(chunk)] == EXPECTED
    assert all(chunk.endswith(b"\n\n") for chunk in chunks if chunk)
    assert splitter.tail() is None


def test_every_cut_of_the_wire_gives_the_same_events() -> None:
    """A CRLF, a blank line or a data line split at any byte is still framed right."""
    for cut in range(len(WIRE) + 1):
        splitter = EventSplitter()
        joined = splitter.feed(WIRE[:cut]) + splitter.feed(WIRE[cut:])
        assert list(events_of(joined)) == EXPECTED, cut
        assert splitter.tail() is None


def test_events_that_arrive_in_one_read_leave_as_one_chunk() -> None:
    splitter = EventSplitter()
    assert splitter.feed(WIRE) == b"".join(EXPECTED)
    assert splitter.feed(b'data: {"c":3}\n\ndata: {"d"') == b'data: {"c":3}\n\n'
    assert splitter.feed(b":4}\n\n") == b'data: {"d":4}\n\n'


def test_the_done_event_is_found_in_a_chunk() -> None:
    chunk = b'data: {"a":1}\n\ndata: [DONE]\n\ndata: {"late":1}\n\n'
    assert end_of_done(chunk) == len(b'data: {"a":1}\n\ndata: [DONE]\n\n')
    assert end_of_done(b'data: {"text":"[DONE]"}\n\n') is None
    assert end_of_done(b'data: {"a":1}\n\n') is None


def test_a_last_event_without_its_blank_line_is_returned_at_the_end() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b'data: {"a":1}\n\ndata: [DONE]\r\n') == b'data: {"a":1}\n\n'
    assert splitter.tail() == b"data: [DONE]\n\n"
    assert splitter.tail() is None


def test_data_done_and_json_in_their_legal_spellings() -> None:
    assert data_of(b'event: e\ndata:{"x": 1}\n\n') == b'{"x": 1}'
    assert data_of(b": ping\n\n") is None


def test_an_event_of_several_data_lines_is_their_payloads_joined_by_newlines() -> None:
    """The SSE spec's rule, which the openai SDK follows when it parses an event."""
    assert data_of(b'data: {"error":\ndata: {"message":"x"}}\n\n') == b'{"error":\n{"message":"x"}}'
    assert data_of(b"event: e\r\ndata: a\r\ndata: b\r\ndata:c") == b"a\nb\nc"
    assert json_of(b'data: {"error":\ndata: 1}\n\n') == {"error": 1}
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


@pytest.mark.parametrize(
    ("chunk", "rest"),
    [
        (b"data: {}\n\n", b"data: {}\n\n"),
        (b": ping\n\n", b""),
        (b": ping\n\n: ping\n\ndata: {}\n\n: x\n\n", b"data: {}\n\n: x\n\n"),
        (b": ping\n\nevent: error\ndata: {}\n\n", b"event: error\ndata: {}\n\n"),
        (b"event: keepalive\n\n", b""),  # no data: dispatched as nothing
    ],
)
def test_what_comes_before_the_first_event_with_data_is_dropped(chunk, rest):
    assert from_first_data(chunk) == rest


CONTENT = (
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
)
LAST = b'data: {"error":null,"id":"c","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}]}\n\n'
USAGE_CHUNK = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
ERROR = b'data: {"error":{"message":"boom"}}\n\n'
OPENROUTER_ERROR = (
    b'data: {"id":"gen-1","object":"chat.completion.chunk","error":{"code":"server_error",'
    b'"message":"Provider disconnected"},"choices":[{"index":0,"delta":{"content":""},'
    b'"finish_reason":"error"}]}\n\n'
)
RESPONSES_ERROR = b'event: error\ndata: {"type":"error","code":"x","message":"boom"}\n\n'
DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([CONTENT, LAST, DONE], False),  # `"error": null` on a good last chunk: no error
        ([CONTENT, LAST, USAGE_CHUNK, DONE], False),
        ([CONTENT, ERROR, DONE], True),
        ([CONTENT, ERROR + DONE], True),
        ([CONTENT, ERROR], True),
        ([CONTENT, OPENROUTER_ERROR, DONE], True),
        ([CONTENT, OPENROUTER_ERROR], True),
        ([CONTENT, b'data:  {"error" : {"message": "x"}}\n\n', DONE], True),
        ([CONTENT, b'data: { "error": {"message": "x"}}\n\n', DONE], True),
        ([CONTENT, b'data:{"error":"overloaded"}\n\n'], True),
        ([CONTENT, ERROR, PING, DONE], True),
        ([CONTENT, ERROR, USAGE_CHUNK, DONE], True),
        ([CONTENT + ERROR + PING + USAGE_CHUNK + DONE], True),
        ([CONTENT, ERROR, CONTENT, DONE], False),  # the stream went on: not its ending
        ([CONTENT, b'data: {"error":{}}\n\n', DONE], False),  # falsy, as the SDK reads it
        ([RESPONSES_ERROR], True),
        ([CONTENT, PING, DONE], False),
        ([], False),
    ],
)
def test_a_stream_ends_on_error_as_the_sdk_reads_it(chunks: list[bytes], expected: bool) -> None:
    assert ends_on_error(chunks) is expected


def test_ends_on_error_looks_only_at_the_last_few_events() -> None:
    assert ends_on_error([ERROR, PING * 3]) is True
    assert ends_on_error([ERROR, PING * 20]) is False  # never walks a whole stream back


RESPONSES_FAILED = (
    b'event: response.failed\ndata: {"type":"response.failed","response":{"status":"failed",'
    b'"error":{"code":"x","message":"boom"}}}\n\n'
)
RESPONSES_CREATED = (
    b'event: response.created\ndata: {"type":"response.created","response":{"error":null}}\n\n'
)


@pytest.mark.parametrize(
    ("chunk", "cut_after"),
    [
        (CONTENT + ERROR + CONTENT + DONE, CONTENT + ERROR),  # the SDK reads no further
        (ERROR + OPENROUTER_ERROR, ERROR),
        (CONTENT + OPENROUTER_ERROR + CONTENT, CONTENT + OPENROUTER_ERROR),
        (
            PING + b'data:{"error":"overloaded"}\n\n' + CONTENT,
            PING + b'data:{"error":"overloaded"}\n\n',
        ),
        (RESPONSES_CREATED + RESPONSES_ERROR + CONTENT, RESPONSES_CREATED + RESPONSES_ERROR),
        (RESPONSES_FAILED + RESPONSES_ERROR, RESPONSES_FAILED),
        (CONTENT + LAST + USAGE_CHUNK + DONE, None),  # `"error": null`: no failure
        (CONTENT + b'data: {"error":{}}\n\n', None),  # falsy, as the SDK reads it
        (RESPONSES_CREATED + CONTENT, None),
        (CONTENT + b'data: {"content": "an error occurred"}\n\n', None),
    ],
)
def test_a_chunk_is_cut_after_its_first_failure_event(
    chunk: bytes, cut_after: bytes | None
) -> None:
    at = end_of_failure(chunk)
    assert (chunk[:at] if at is not None else None) == cut_after
