"""A stream holds back a bounded pattern's whole width, past 256 characters too, and
holding a wide window costs linear time: a held text is rescanned as it doubles."""

import json

import orjson
import pytest

from gateway.guardrails.check import INLINE_MATCHES
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.patterns import UNBOUNDED_MATCH_CHARS, max_match_chars
from gateway.guardrails.scanner import Rule, RuleSource, Scanner, redact
from tests.support.output_stream import scan_stream

LONG_BLOCK = "QQSTART[a-z]{300}QQEND"
LONG_REDACT = "(?i)ZZ[0-9]{1000}[0-9]{1000}"
RULES = [
    RuleSource(Rule("longb", DetectorKind.PATTERN, GuardAction.BLOCK), LONG_BLOCK),
    RuleSource(Rule("longr", DetectorKind.PATTERN, GuardAction.REDACT), LONG_REDACT),
]
WIDE = Scanner(RULES)
BLOCKED = "Here: QQSTART" + "q" * 300 + "QQEND, done."
REDACTED = "Here: zz" + "7" * 2000 + " done."


def chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def chat(piece: str) -> bytes:
    choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
    return b"data: " + orjson.dumps({"id": "c", "model": "m", "choices": [choice]}) + b"\n\n"


def completion(piece: str) -> bytes:
    choice = {"index": 0, "text": piece, "finish_reason": None}
    return b"data: " + orjson.dumps({"id": "c", "model": "m", "choices": [choice]}) + b"\n\n"


def response(piece: str) -> bytes:
    data = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0}
    data |= {"content_index": 0, "delta": piece}
    return b"event: response.output_text.delta\ndata: " + orjson.dumps(data) + b"\n\n"


ENDPOINTS = {"chat": chat, "completions": completion, "responses": response}


def client_text(out: bytes) -> str:
    """What the client read of the text, every endpoint's events joined."""
    text = ""
    for line in out.split(b"\n"):
        if not line.startswith(b"data: {"):
            continue
        data = json.loads(line[6:])
        if "delta" in data and isinstance(data["delta"], str):
            text += data["delta"]
        for choice in data.get("choices") or ():
            text += choice.get("text") or (choice.get("delta") or {}).get("content") or ""
    return text


def streamed(scanner: Scanner, endpoint: str, text: str, size: int) -> tuple[str, bool]:
    make = ENDPOINTS[endpoint]
    out, ended = scan_stream(scanner, [make(piece) for piece in chunks(text, size)], endpoint)
    return client_text(out), ended


def test_a_bounded_pattern_s_window_is_its_whole_width():
    """A pattern whose matches have a bound holds back that bound, past 256 characters."""
    assert max_match_chars(LONG_BLOCK) == 312
    assert max_match_chars(LONG_REDACT) == 2002
    assert max_match_chars("a{1000}" * 3) == 3000
    assert max_match_chars("(?s)BEGIN.*END") == UNBOUNDED_MATCH_CHARS
    assert max_match_chars("x{2,}") == UNBOUNDED_MATCH_CHARS
    assert WIDE.window_chars == 2002


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("size", [1, 7, 64, 300])
def test_a_block_match_longer_than_256_characters_ends_the_stream(endpoint, size):
    """Streamed in pieces, a 312-character blocked match ends the stream; none of it left."""
    released, ended = streamed(WIDE, endpoint, BLOCKED, size)
    assert ended
    assert "QQSTART".startswith(released[6:]) and len(released) <= len("Here: ")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("size", [1, 13, 256, 700])
def test_a_redact_match_of_2002_characters_is_redacted_on_a_stream(endpoint, size):
    """A 2,002-character match streamed in pieces reaches the client as the marker."""
    released, ended = streamed(WIDE, endpoint, REDACTED, size)
    assert not ended
    assert released == "Here: [REDACTED:longr] done."


@pytest.mark.parametrize("size", [1, 10, 100])
def test_a_wide_pattern_python_reads_otherwise_than_re2_blocks_on_a_stream(size):
    """`[[:digit:]]` (dialect.py): its window comes from RE2's program, not Python's
    parse, and still covers a 302-character match."""
    pattern = "QQ[[:digit:]]{300}"
    assert max_match_chars(pattern) >= 302
    scanner = Scanner([RuleSource(Rule("posix", DetectorKind.PATTERN, GuardAction.BLOCK), pattern)])
    released, ended = streamed(scanner, "chat", "code QQ" + "5" * 300 + " x", size)
    assert ended and "5" not in released


class CountingScanner(Scanner):
    """A scanner that counts the characters the window hands it to scan."""

    def __init__(self, sources: list[RuleSource]) -> None:
        super().__init__(sources)
        self.scanned = 0

    def scan_stream(self, text, start, *, final, budget=None):
        self.scanned += len(text)
        return super().scan_stream(text, start, final=final, budget=budget)

    def clean_hold(self, text, start):
        self.scanned += len(text)
        return super().clean_hold(text, start)


def test_holding_a_wide_match_one_character_a_piece_costs_linear_time():
    """2,000 digits of a possible 2,002-character match, one an event: the window looks at
    a few times the text, not at the whole hold each event (~2 million characters)."""
    scanner = CountingScanner(RULES)
    text = "Here: ZZ" + "5" * 1990 + " and prose after it."
    released, ended = streamed(scanner, "chat", text, 1)
    assert released == text and not ended
    assert scanner.scanned < 40 * len(text), scanner.scanned


def test_a_dense_event_after_a_long_hold_moves_to_a_thread_and_loses_nothing():
    """Pieces waiting for a rescan, then an event past the inline match budget: undone on
    the loop, fed again on a thread; the client reads what a whole-text scan gives."""
    scanner = Scanner([*RULES, RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT))])
    text = "Here: ZZ" + "3" * 600 + " " + "a@b.co " * (INLINE_MATCHES + 10) + "end."
    pieces = [*chunks(text[:609], 1), text[609:-4], "end."]
    out, ended = scan_stream(scanner, [chat(piece) for piece in pieces])
    assert not ended
    assert client_text(out) == redact(text, scanner.find(text))


def test_a_dense_event_ending_a_held_number_in_arguments_loses_no_digit():
    """Arguments holding a number that grows piece by piece, then an event that ends it
    past the inline match budget: fed again on a thread, every digit reaches the client."""
    scanner = Scanner([RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT))])
    tail = ', "m": "' + "a@b.co " * (INLINE_MATCHES + 10) + '"}'
    pieces = ['{"n": 12', "34", "56", tail]
    events = [tool_call(piece) for piece in pieces]
    out, ended = scan_stream(scanner, events)
    assert not ended
    arguments = "".join(pieces)
    assert arguments_of(out) == redact(arguments, scanner.find(arguments))


def tool_call(arguments: str) -> bytes:
    call = {"index": 0, "function": {"arguments": arguments}}
    choice = {"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}
    return b"data: " + orjson.dumps({"id": "c", "model": "m", "choices": [choice]}) + b"\n\n"


def arguments_of(out: bytes) -> str:
    text = ""
    for line in out.split(b"\n\n"):
        if line.startswith(b"data: {"):
            for choice in orjson.loads(line[6:])["choices"]:
                for call in (choice.get("delta") or {}).get("tool_calls") or ():
                    text += call["function"].get("arguments") or ""
    return text
