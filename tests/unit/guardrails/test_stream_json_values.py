"""Streamed JSON (tool arguments; content the request asked to be JSON): a number a rule
matches becomes the marker as a string, and the joined deltas parse, cut anywhere. A
number is never released while it may go on, so it is never half sent."""

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.stream_scanner import OutputScanner
from gateway.stream.steps import Chain
from tests.unit.guardrails.test_json_layout import REDACT, VALUES, redacted_value
from tests.unit.guardrails.test_stream_arguments import chat_arguments, chat_events, tool_chunk
from tests.unit.guardrails.test_stream_fields import chat_chunk, deltas, response_event

PAYMENT = '{"card": 4111111111111111, "email": "bob\\u0040example.com", "n": 2}'
REDACTED = {"card": "[REDACTED:credit_card]", "email": "[REDACTED:email]", "n": 2}


def run(events: list[bytes], *, endpoint: str = "chat", is_json: bool = False) -> bytes:
    chain = Chain([OutputScanner(REDACT, endpoint, [], is_json)])
    out = b""
    for event in events:
        emit = chain.feed(event)
        if emit.offload is not None:
            emit = emit.offload()
        assert emit.end is None
        out += emit.data
    emit = chain.finish()
    assert emit.end is None
    return out + emit.data


def pieces(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def content_events(text: str, cuts: list[int]) -> list[bytes]:
    return [
        *(chat_chunk({"content": p}) for p in pieces(text, cuts)),
        chat_chunk({}, finish="stop"),
        b"data: [DONE]\n\n",
    ]


def output_text_events(text: str, cuts: list[int]) -> list[bytes]:
    at = {"item_id": "m", "output_index": 0, "content_index": 0}
    return [
        *(response_event("response.output_text.delta", **at, delta=p) for p in pieces(text, cuts)),
        response_event("response.output_text.done", **at, text=text),
    ]


def output_text(out: bytes) -> tuple[str, str]:
    """The deltas joined, and the `done` event's whole text."""
    events = deltas(out)
    joined = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    return joined, events[-1]["text"]


@pytest.mark.parametrize("first", range(1, len(PAYMENT)))
def test_a_number_in_arguments_is_redacted_as_json_cut_anywhere(first):
    for cuts in ([first], [first, min(first + 3, len(PAYMENT) - 1)]):
        cuts = sorted(set(cuts))
        assert json.loads(chat_arguments(run(chat_events(PAYMENT, cuts)))) == REDACTED


@pytest.mark.parametrize("first", range(1, len(PAYMENT)))
def test_content_asked_as_json_is_redacted_as_json_cut_anywhere(first):
    """Chat content and a Responses output text: escapes decoded, numbers as strings."""
    content = "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in deltas(run(content_events(PAYMENT, [first]), is_json=True))
        if e.get("choices")
    )
    assert json.loads(content) == REDACTED
    joined, whole = output_text(
        run(output_text_events(PAYMENT, [first]), endpoint="responses", is_json=True)
    )
    assert json.loads(joined) == json.loads(whole) == REDACTED


def test_content_not_asked_as_json_is_prose():
    """Without is_json, content is redacted as text (escapes not decoded), as before."""
    content = "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in deltas(run(content_events(PAYMENT, [7, 30])))
        if e.get("choices")
    )
    assert content == '{"card": [REDACTED:credit_card], "email": "bob\\u0040example.com", "n": 2}'


def test_a_number_is_held_until_it_ends():
    """`{"n": 9912` may go on (`345}`): none of the number is sent before it ends, not
    even the `99` no match could begin in (a rule matching `12345` replaces it whole)."""
    rule = Rule("zip", DetectorKind.PATTERN, GuardAction.REDACT)
    scanner = Scanner([RuleSource(rule, pattern="12345")])
    step = OutputScanner(scanner, "chat", [])
    first = step.feed(tool_chunk('{"n": 9912')).data
    assert chat_arguments(first) == '{"n": '
    rest = step.feed(tool_chunk("345}")).data + step.finish().data
    assert chat_arguments(first + rest) == '{"n": "[REDACTED:zip]"}'


@settings(max_examples=300, deadline=None)
@given(
    value=VALUES.filter(lambda v: isinstance(v, dict | list)),
    ascii_only=st.booleans(),
    cuts=st.sets(st.integers(1, 300), max_size=6),
)
def test_streamed_json_reads_as_the_value_redacted(value, ascii_only, cuts):
    """Any JSON object or array, in pieces cut anywhere: the client reads the value with
    each string and number redacted; a clean one comes as written."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    cut_at = sorted(c for c in cuts if c < len(text))
    received = chat_arguments(run(chat_events(text, cut_at)))
    assert json.loads(received) == redacted_value(value)
    if redacted_value(value) == value:
        assert received == text
