"""ASCII control characters (C0 but tab, line feed, carriage return; DEL) are folded
away before scanning, as C1 controls and zero-width characters are: a control inside a
word, a key or a card number hides nothing, and a redaction covers it. A text holding
one is read a second way too, the controls kept as separators: one after a key cannot
glue the next word to it and hide it."""

from collections import Counter

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.normalize import fold, is_plain_ascii
from gateway.guardrails.scanner import Rule, RuleSource, Scanner, redact
from tests.support.output_stream import scan_stream

CONTROLS = [chr(c) for c in (*range(0x20), 0x7F) if chr(c) not in "\t\n\r"]
KEYWORDS = Scanner(
    [
        RuleSource(
            Rule("words", DetectorKind.KEYWORDS, GuardAction.BLOCK),
            keywords=("zebracorn", "SECRETCODE"),
        )
    ]
)
REDACT = Scanner(
    [
        RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.REDACT)),
        RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.REDACT)),
        RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT)),
    ]
)


def names(scanner: Scanner, text: str) -> list[str]:
    return [finding.rule.name for finding in scanner.find(text)]


@pytest.mark.parametrize("control", CONTROLS, ids=[f"{ord(c):#04x}" for c in CONTROLS])
def test_each_ascii_control_is_dropped_and_mapped_back(control):
    """Folded, the control is gone; each kept character still points at its original."""
    text = f"a{control}b"
    folded = fold(text)
    assert folded.text == "ab"
    assert folded.original_span(0, 2) == (0, 3)
    assert not is_plain_ascii(text)


def test_tab_line_feed_and_carriage_return_stay():
    """The three controls a text's layout uses are kept, and such a text needs no map."""
    text = "a\tb\r\nc"
    assert fold(text).text == text and fold(text).origin is None
    assert is_plain_ascii(text)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("a zebra\x00corn b", "words"),
        ("SECRET\x7fCODE", "words"),
        ("\u00e9t\u00e9: zebra\x1bcorn", "words"),  # non-ASCII text takes the other path
    ],
)
def test_a_control_inside_a_keyword_does_not_hide_it(text, rule):
    assert names(KEYWORDS, text) == [rule]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key AKIAIOSFODNN7\x00EXAMPLE here", "key [REDACTED:secrets] here"),
        ("card 4111\x7f1111\x7f1111\x7f1111.", "card [REDACTED:credit_card]."),
        ("\x01mail jane\x08.doe@corp.example.com\x7f", "\x01mail [REDACTED:email]\x7f"),
        ("\u00fc 4111\x001111\x001111\x001111", "\u00fc [REDACTED:credit_card]"),
    ],
)
def test_a_redaction_covers_the_controls_inside_its_match(text, expected):
    """The span redacted is the original one: the controls inside it go with it, those
    outside it stay where they were."""
    assert redact(text, REDACT.find(text)) == expected


def strip(text: str) -> str:
    return "".join(c for c in text if c not in CONTROLS)


PIECES = st.sampled_from(
    [
        "Hello ",
        "zebracorn",
        " ",
        "4111 1111 1111 1111",
        "AKIAIOSFODNN7EXAMPLE",
        "jane.doe@corp.example.com",
        "SECRETCODE",
        ".",
        "\n",
        "\u00e9",
        "\u200b",
        "42",
    ]
)


@st.composite
def with_controls(draw: st.DrawFn) -> tuple[str, str]:
    clean = "".join(draw(st.lists(PIECES, max_size=8)))
    chars = list(clean)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(chars)))
        chars.insert(at, draw(st.sampled_from(CONTROLS)))
    return clean, "".join(chars)


@settings(max_examples=300, deadline=None)
@given(with_controls())
def test_any_text_with_controls_inserted_hides_none_of_its_matches(case):
    """Every match of the text is a match of it with controls inserted, of the same rule
    and covering the same characters (the second reading may find more, never less)."""
    clean, noisy = case
    kept = [i for i, c in enumerate(noisy) if c not in CONTROLS]  # clean index -> noisy
    for scanner in (KEYWORDS, REDACT):
        found = scanner.find(noisy)
        assert Counter(names(scanner, clean)) <= Counter(f.rule.name for f in found)
        for f in scanner.find(clean):
            start, end = kept[f.start], kept[f.end - 1] + 1
            assert any(g.rule == f.rule and g.start <= start and end <= g.end for g in found)


def test_a_control_right_after_a_key_does_not_glue_the_next_word_to_it():
    """Dropped, the NUL would make `...EXAMPLEx` no key at all; kept, it ends the key."""
    text = "key AKIAIOSFODNN7EXAMPLE\x00x"
    assert redact(text, REDACT.find(text)) == "key [REDACTED:secrets]\x00x"
    assert fold(text).has_second_reading  # read both ways


def chat(piece: str) -> bytes:
    choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
    return b"data: " + orjson.dumps({"id": "c", "model": "m", "choices": [choice]}) + b"\n\n"


def content(out: bytes) -> str:
    text = ""
    for line in out.split(b"\n\n"):
        if line.startswith(b"data: {"):
            for choice in orjson.loads(line[6:])["choices"]:
                text += (choice.get("delta") or {}).get("content") or ""
    return text


@pytest.mark.parametrize("split", range(1, len("say SECRET\x7fCODE now")))
def test_a_streamed_keyword_with_a_control_inside_blocks(split):
    """Cut anywhere, the keyword with a DEL inside ends the stream before it leaves."""
    text = "say SECRET\x7fCODE now"
    out, ended = scan_stream(KEYWORDS, [chat(text[:split]), chat(text[split:])])
    assert ended and "CODE" not in content(out)


@pytest.mark.parametrize("split", range(1, len("card 4111\x7f1111\x7f1111\x7f1111 ok")))
def test_a_streamed_card_with_controls_inside_is_redacted(split):
    """Cut anywhere, the card with DELs inside reaches the client as the marker."""
    text = "card 4111\x7f1111\x7f1111\x7f1111 ok"
    out, ended = scan_stream(REDACT, [chat(text[:split]), chat(text[split:])])
    assert not ended and content(out) == "card [REDACTED:credit_card] ok"
