"""Responses streams under output rules: the client's `sequence_number`s go up by one an
event, the events the scanner adds (a held text sent before its `*.done`) included."""

import json

import pytest

from gateway.guardrails.stream_scanner import OutputScanner
from gateway.stream.steps import Chain
from tests.unit.guardrails.test_stream_fields import REDACT, response_event

AT = {"item_id": "m", "output_index": 0, "content_index": 0}
RESPONSE = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}


def stream(pieces: list[str]) -> list[bytes]:
    text = "".join(pieces)
    deltas = [
        response_event("response.output_text.delta", sequence_number=n, **AT, delta=piece)
        for n, piece in enumerate(pieces, start=1)
    ]
    end = len(pieces) + 1
    return [
        response_event("response.created", sequence_number=0, response=RESPONSE),
        *deltas,
        response_event("response.output_text.done", sequence_number=end, **AT, text=text),
        response_event("response.completed", sequence_number=end + 1, response=RESPONSE),
    ]


def events_sent(events: list[bytes], *, one_chunk: bool) -> list[dict]:
    chain = Chain([OutputScanner(REDACT, "responses", [])])
    out = b""
    for chunk in [b"".join(events)] if one_chunk else events:
        emit = chain.feed(chunk)
        assert emit.end is None and emit.offload is None
        out += emit.data
    out += chain.finish().data
    return [json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("one_chunk", [False, True])
@pytest.mark.parametrize(
    "pieces",
    [
        ["Hello ", "there ", "friend"],  # the last word is held to the `done`
        ["Mail bob@exa", "mple.com", " or alice@example.org"],  # and redacted
        ["one", " two", " three", " four"],
    ],
)
def test_held_text_sent_before_done_is_numbered_in_order(pieces, one_chunk):
    sent = events_sent(stream(pieces), one_chunk=one_chunk)
    numbers = [event["sequence_number"] for event in sent]
    assert numbers == list(range(len(sent)))
    text = "".join(e["delta"] for e in sent if e["type"] == "response.output_text.delta")
    done = next(e for e in sent if e["type"] == "response.output_text.done")
    assert text == done["text"] and "@" not in text


def test_a_stream_with_nothing_held_keeps_its_numbers_and_bytes():
    events = stream(["Hello ", "there ", "friend."])
    events[-2] = response_event("response.output_text.done", sequence_number=4, **AT, text="x")
    chain = Chain([OutputScanner(REDACT, "responses", [])])
    sent = b"".join(chain.feed(event).data for event in events[:3])
    assert sent == b"".join(events[:3])
