"""A long bare value (a number) in streamed JSON costs linear work: while it is held (it may
go on, and a redaction replaces it whole) each piece is not scanned with all of it again."""

import json

import pytest

from gateway.guardrails import stream_scanner
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.stream_scanner import OutputScanner
from gateway.stream.steps import Chain
from tests.unit.guardrails.test_json_layout import REDACT
from tests.unit.guardrails.test_stream_arguments import chat_arguments, chat_events
from tests.unit.guardrails.test_stream_fields import deltas
from tests.unit.guardrails.test_stream_json_values import content_events, output_text_events


@pytest.fixture
def scanned(monkeypatch) -> list[int]:
    """The length of each text the window scans or lays out."""
    lengths: list[int] = []
    scan_stream = Scanner.scan_stream

    def counted_scan(self, text, start, **kwargs):
        lengths.append(len(text))
        return scan_stream(self, text, start, **kwargs)

    class CountedLayout(stream_scanner.Layout):
        def __init__(self, source: str, in_string: bool = False) -> None:
            lengths.append(len(source))
            super().__init__(source, in_string)

    monkeypatch.setattr(Scanner, "scan_stream", counted_scan)
    monkeypatch.setattr(stream_scanner, "Layout", CountedLayout)
    return lengths


def run(events: list[bytes], scanner: Scanner = REDACT, **kwargs) -> bytes:
    chain = Chain([OutputScanner(scanner, **kwargs)])
    out = b""
    for event in events:
        emit = chain.feed(event)
        if emit.offload is not None:
            emit = emit.offload()
        out += emit.data
    return out + chain.finish().data


def cuts(text: str, size: int) -> list[int]:
    return list(range(size, len(text), size))


NUMBER = '{"id": ' + "7" * 30_000 + ', "card": 4111111111111111}'
EXPECTED = NUMBER.replace("4111111111111111", '"[REDACTED:credit_card]"')


def test_tool_arguments_with_a_long_number_cost_linear_work(scanned):
    out = run(chat_events(NUMBER, cuts(NUMBER, 3)), endpoint="chat", hits=[])
    assert chat_arguments(out) == EXPECTED
    assert sum(scanned) < 20 * len(NUMBER)  # the quadratic version: about 5,000 times


def test_content_asked_as_json_with_a_long_number_costs_linear_work(scanned):
    text = '{"n": ' + "1" * 10_000 + "}"
    out = run(content_events(text, cuts(text, 1)), endpoint="chat", hits=[], is_json=True)
    content = "".join(
        e["choices"][0]["delta"].get("content") or "" for e in deltas(out) if e.get("choices")
    )
    assert content == text
    assert sum(scanned) < 20 * len(text)


def test_responses_output_text_with_a_long_number_costs_linear_work(scanned):
    events = output_text_events(NUMBER, cuts(NUMBER, 5))
    out = run(events, endpoint="responses", hits=[], is_json=True)
    joined = "".join(e["delta"] for e in deltas(out) if e["type"].endswith(".delta"))
    assert joined == EXPECTED
    assert sum(scanned) < 20 * len(NUMBER)


def test_a_match_inside_a_long_number_still_redacts_or_blocks_it():
    """The held value is scanned whole once it ends: a match in it is not missed."""
    text = '{"id": ' + "7" * 5_000 + "4242" + "7" * 5_000 + "}"
    rule = Rule("run", DetectorKind.PATTERN, GuardAction.REDACT)
    redact = Scanner([RuleSource(rule, pattern="74242")])
    out = run(chat_events(text, cuts(text, 2)), redact, endpoint="chat", hits=[])
    assert json.loads(chat_arguments(out)) == {"id": "[REDACTED:run]"}
    block = Scanner([RuleSource(Rule("run", DetectorKind.PATTERN, GuardAction.BLOCK), "74242")])
    chain = Chain([OutputScanner(block, "chat", [])])
    sent = b""
    for event in chat_events(text, cuts(text, 2)):
        emit = chain.feed(event)
        sent += emit.data
        if emit.end is not None:
            break
    assert emit.end is not None and "4242" not in chat_arguments(sent)
