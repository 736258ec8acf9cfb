"""A Responses stream's held text goes out when its text ends (a `*.done` event of its
item, the response's end), not at an event in between (an annotation, a part or item
added): a key split around such an event is caught whole; and a delta for a text that
already ended is dropped, never scanned in a fresh window."""

import json
from typing import Any

import pytest

from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.stream_scanner import OutputScanner
from tests.support.output_stream import scan_stream

KEY = "AKIAIOSFODNN7EXAMPLE"
BLOCK = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
REDACT = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.REDACT))])


def sse(data: dict[str, Any]) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"


def delta(text: str, item: str = "msg_1") -> bytes:
    return sse(
        {"type": "response.output_text.delta", "item_id": item, "output_index": 0}
        | {"content_index": 0, "delta": text}
    )


ANNOTATION = sse(
    {
        "type": "response.output_text.annotation.added",
        "item_id": "msg_1",
        "annotation": {"type": "url_citation", "url": "https://example.com", "title": "t"},
    }
)
ADDED = sse({"type": "response.output_item.added", "item": {"type": "message", "id": "msg_2"}})
DONE = sse({"type": "response.output_text.done", "item_id": "msg_1", "text": "..."})


def run(scanner: Scanner, events: list[bytes]) -> tuple[str, bool]:
    """Every delta the client got, joined, and whether the stream ended with an error."""
    out, ended = scan_stream(scanner, events, "responses")
    deltas = []
    for line in out.split(b"\n"):
        if line.startswith(b"data: {"):
            data = json.loads(line[6:])
            if data.get("type", "").endswith(".delta"):
                deltas.append(data["delta"])
    return "".join(deltas), ended


@pytest.mark.parametrize("between", [ANNOTATION, ADDED], ids=["annotation", "item-added"])
@pytest.mark.parametrize("scanner", [BLOCK, REDACT], ids=["block", "redact"])
def test_a_key_split_around_an_event_in_between_is_caught(between, scanner):
    seen, ended = run(scanner, [delta("my key " + KEY[:8]), between, delta(KEY[8:] + " ok")])
    assert KEY[:8] not in seen and (ended or "[REDACTED:secrets]" in seen)


def test_a_delta_after_its_text_s_done_event_is_dropped():
    seen, ended = run(BLOCK, [delta("my key " + KEY[:8]), DONE, delta(KEY[8:] + " ok")])
    assert KEY[8:] not in seen and not ended


def test_another_item_s_text_goes_on_after_one_item_s_done():
    events = [delta("one "), DONE, delta("two ", "msg_2"), delta("goes on", "msg_2")]
    seen, ended = run(BLOCK, events)
    assert seen == "one two goes on" and not ended


@pytest.mark.parametrize("scanner", [BLOCK, REDACT], ids=["block", "redact"])
def test_a_key_in_a_delta_event_s_own_field_never_leaves(scanner):
    """A provider's own field on a Responses delta event is reviewed whole."""
    extra = sse(
        {"type": "response.output_text.delta", "item_id": "msg_1", "content_index": 0}
        | {"delta": "hi ", "sources": [{"snippet": f"key {KEY}"}]}
    )
    step = OutputScanner(scanner, "responses", [])
    emit = step.feed(delta("well "))
    emit = step.feed(extra)
    assert KEY.encode() not in emit.data
