"""Invisible characters inside a secret (tag characters, zero-width and other
default-ignorable ones) do not hide it: a block rule blocks, a redact rule removes the
whole disguised match, in requests, whole answers and streams."""

import pytest

from gateway.guardrails.check import check_request
from gateway.guardrails.decision import Blocked, Passed, review
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.normalize import fold, fold_visible
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.window import advance

KEY = "AKIAIOSFODNN7EXAMPLE"
BLOCK = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
REDACT = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.REDACT))])
MARK = "[REDACTED:secrets]"


def tag(ch: str) -> str:
    return chr(0xE0000 + ord(ch))


# Invisible on screen, each inside the key: the key is what a reader copies.
INVISIBLE = [
    tag("A"),  # a tag copy of a letter: read as ASCII it would lengthen the key
    tag(" "),  # a tag space
    tag("~"),
    "\U000e0000",  # unassigned in the tag block, default-ignorable
    "\U000e0002",
    "\U000e0080",
    "\U000e0fff",
    "\u2065",
    "\ufff0",
    "\u200d",  # zero-width joiner
    "\u2060",
    "\U000e0001",
    "\U000e007f",
]
HIDDEN = [KEY[:4] + c + KEY[4:] for c in INVISIBLE] + [
    tag("x").join(KEY),
    "\u200d".join(KEY),
    KEY[:10] + tag("Q") + "\u200b" + KEY[10:],
]


@pytest.mark.parametrize("text", HIDDEN, ids=ascii)
def test_a_key_with_invisible_characters_inside_is_blocked(text):
    body = {"messages": [{"role": "user", "content": f"my key: {text} thanks"}]}
    assert isinstance(check_request(BLOCK, "chat", body), Blocked)


@pytest.mark.parametrize("text", HIDDEN, ids=ascii)
def test_a_key_with_invisible_characters_inside_is_redacted_whole(text):
    result = review(REDACT, f"my key: {text} thanks")
    assert result.text == f"my key: {MARK} thanks"


def test_a_key_spelled_in_tag_characters_is_still_found():
    """Read as the ASCII they copy, tag characters spell the key (a model reads them)."""
    spelled = "".join(tag(c) for c in KEY)
    assert review(REDACT, f"a {spelled} b").text == f"a {MARK} b"


@pytest.mark.parametrize("text", HIDDEN[:4], ids=ascii)
def test_a_stream_holds_and_blocks_a_key_with_invisible_characters_inside(text):
    """Split at every offset, the window never releases the disguised key."""
    for cut in range(1, len(text)):
        first = advance(BLOCK, "", "key " + text[:cut], final=False)
        assert first.blocked_by is None
        assert KEY[:4] not in first.release or cut < 4
        second = advance(BLOCK, first.context, first.keep + text[cut:] + " end", final=True)
        assert second.blocked_by is not None, cut


def test_fold_visible_drops_tags_and_keeps_the_map():
    text = "AK" + tag("Z") + "IA"
    assert fold(text).text == "AKZIA" and fold(text).has_second_reading
    visible = fold_visible(text)
    assert visible.text == "AKIA" and visible.original_span(1, 3) == (1, 4)


def test_text_without_tags_reads_one_way():
    """No second reading (and no second scan) for text without tag characters."""
    assert not fold("caf\u00e9 \u200d").has_second_reading and not fold("plain").has_second_reading


def test_clean_text_with_tags_passes_unchanged():
    text = "hello " + "".join(tag(c) for c in "hi") + " world"
    decision = check_request(REDACT, "chat", {"messages": [{"role": "user", "content": text}]})
    assert isinstance(decision, Passed)
    assert decision.body["messages"][0]["content"] is text
