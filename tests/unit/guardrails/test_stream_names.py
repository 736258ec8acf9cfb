"""A redact rule that matches a text the stream reads whole as JSON under a name-like key
(`name`, `type`, ...): json_texts.py refuses to rewrite a name, and the stream ends with
the rule's error event instead of the step raising."""

import orjson

from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.stream_scanner import OutputScanner

KEY = "AKIAIOSFODNN7EXAMPLE"
REDACT = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.REDACT))])


def feed(endpoint: str, event: dict) -> tuple[bytes, object]:
    step = OutputScanner(REDACT, endpoint, [])
    emit = step.feed(b"data: " + orjson.dumps(event) + b"\n\n")
    while emit.offload is not None:
        emit = emit.offload()
    return emit.data, emit.end


def test_a_name_in_a_streamed_citation_ends_the_stream():
    citation = {"type": "url_citation", "url_citation": {"url": "x", "title": {"name": KEY}}}
    event = {"choices": [{"index": 0, "delta": {"annotations": [citation]}}]}
    data, end = feed("chat", event)
    assert end is not None and KEY.encode() not in data


def test_a_name_in_a_responses_done_event_ends_the_stream():
    event = {"type": "response.output_text.done", "text": {"name": KEY}, "sequence_number": 1}
    data, end = feed("responses", event)
    assert end is not None and KEY.encode() not in data
