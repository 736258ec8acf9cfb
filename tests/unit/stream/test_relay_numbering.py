"""The gateway's own Responses error event is numbered after the last event sent."""

from __future__ import annotations

import orjson

from gateway.errors import UpstreamUnavailable
from gateway.stream.relay import ResponsesErrorEvent


def number_of(event: bytes) -> int:
    return int(orjson.loads(event.split(b"data: ", 1)[1])["sequence_number"])


def test_with_nothing_seen_the_error_event_is_number_zero():
    assert number_of(ResponsesErrorEvent()(UpstreamUnavailable("gone"))) == 0


def test_the_last_number_of_the_last_write_counts():
    numbering = ResponsesErrorEvent()
    numbering.seen(
        b'event: a\ndata: {"type":"a","sequence_number":4}\n\n'
        b'event: b\ndata: {"type":"b","sequence_number": 17,"delta":"x"}\n\n'
    )
    numbering.seen(b'data: {"type":"c","delta":"no number in this write"}\n\n')
    assert number_of(numbering(UpstreamUnavailable("gone"))) == 18


def test_text_that_mentions_the_key_is_escaped_and_not_read():
    numbering = ResponsesErrorEvent()
    numbering.seen(b'data: {"sequence_number":3,"delta":"\\"sequence_number\\": 99"}\n\n')
    assert number_of(numbering(UpstreamUnavailable("gone"))) == 4
