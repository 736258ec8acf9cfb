"""Folding's quick check is exact: a text it passes unfolded is one the full fold leaves
alone, so no invisible or combining character slips past a rule."""

import unicodedata

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails import fold_table
from gateway.guardrails.check import check_request
from gateway.guardrails.decision import Blocked
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.normalize import changed_ranges, fold, fold_slowly
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from tests.support.output_stream import scan_stream

KEY = "AKIAIOSFODNN7EXAMPLE"
BLOCK_SECRETS = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
# Characters fold drops that the old quick check did not know: variation selectors,
# combining marks, format characters.
JOINERS = ["\U000e0100", "\U000e01ef", "\ufe20", "\u1dc0", "\u20d0", "\ufff9", "\U0001bca0"]
JOINERS += ["\U0001d173", "\u0600", "\u200b", "\u2064", "\u061c", "\u180e", "\u17b4"]


@given(st.text())
@settings(max_examples=2000)
def test_the_quick_path_answers_as_the_full_fold_does(text):
    """For any text, fold's answer is the character-by-character fold's."""
    assert fold(text).text == fold_slowly(text).text


@given(st.text(st.characters(blacklist_categories=["Cs"]), min_size=1), st.integers(0, 20))
def test_any_character_fold_changes_sends_a_text_down_the_slow_path(inserted, at):
    """A key with any text spliced in folds as the slow path folds it."""
    text = KEY[:at] + inserted + KEY[at:]
    assert fold(text).text == fold_slowly(text).text


@pytest.mark.skipif(
    unicodedata.unidata_version != fold_table.UNICODE_VERSION, reason="another Unicode"
)
def test_the_table_lists_exactly_the_characters_fold_changes():
    """fold_table.py, derived again over every code point, is unchanged."""
    assert fold_table.ranges() == changed_ranges()


@pytest.mark.parametrize("joiner", JOINERS)
def test_a_key_split_by_an_invisible_or_combining_character_is_blocked(joiner):
    """The key with the character between each of its letters still blocks."""
    body = {"messages": [{"role": "user", "content": "my key " + joiner.join(KEY)}]}
    assert isinstance(check_request(BLOCK_SECRETS, "chat", body), Blocked)


# Latin small capitals A..Z (no x), and the negative circled and negative squared
# capitals: NFKC leaves all three alone (by code point: the linter flags them written out).
SMALL_CAPITALS = [0x1D00, 0x299, 0x1D04, 0x1D05, 0x1D07, 0xA730, 0x262, 0x29C, 0x26A, 0x1D0A]
SMALL_CAPITALS += [0x1D0B, 0x29F, 0x1D0D, 0x274, 0x1D0F, 0x1D18, 0xA7AF, 0x280, 0xA731, 0x1D1B]
SMALL_CAPITALS += [0x1D1C, 0x1D20, 0x1D21, 0x28F, 0x1D22]
NEGATIVE_CIRCLED = [0x1F150 + i for i in range(26)]
NEGATIVE_SQUARED = [0x1F170 + i for i in range(26)]
WORDS = Scanner(
    [RuleSource(Rule("words", DetectorKind.KEYWORDS, GuardAction.BLOCK), keywords=("zebracorn",))]
)


def spelled(word: str, capitals: list[int], letters: str) -> str:
    """`word` written in `capitals`, the i-th of which shows letters[i]."""
    return "".join(chr(capitals[letters.index(c)]) for c in word)


def test_small_capitals_fold_to_the_lowercase_letters_they_show():
    """Each of the 25 small capitals folds to its letter, and maps back to itself."""
    text = "".join(map(chr, SMALL_CAPITALS))
    folded = fold(text)
    assert folded.text == "abcdefghijklmnopqrstuvwyz"
    assert [folded.original_span(i, i + 1) for i in range(25)] == [(i, i + 1) for i in range(25)]


@pytest.mark.parametrize("capitals", [NEGATIVE_CIRCLED, NEGATIVE_SQUARED])
def test_negative_capitals_fold_to_ascii_capitals(capitals):
    assert fold("".join(map(chr, capitals))).text == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@pytest.mark.parametrize(
    "word",
    [
        spelled("zebracorn", SMALL_CAPITALS, "abcdefghijklmnopqrstuvwyz"),
        spelled("ZEBRACORN", NEGATIVE_SQUARED, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        spelled("ZEBRACORN", NEGATIVE_CIRCLED, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ],
    ids=["small capitals", "negative squared", "negative circled"],
)
def test_a_keyword_spelled_in_capitals_nfkc_keeps_is_blocked(word):
    """A request spelling a listed word in such letters is blocked as the word is."""
    body = {"messages": [{"role": "user", "content": f"tell me about {word} please"}]}
    decision = check_request(WORDS, "chat", body)
    assert isinstance(decision, Blocked) and decision.rule == "words"


def test_a_key_in_negative_squared_capitals_is_blocked():
    """An AWS key whose letters are negative squared capitals (its digits plain)."""
    key = "".join(chr(NEGATIVE_SQUARED[ord(c) - ord("A")]) if c.isalpha() else c for c in KEY)
    body = {"messages": [{"role": "user", "content": f"my key {key}"}]}
    assert isinstance(check_request(BLOCK_SECRETS, "chat", body), Blocked)


SMALL_WORD = "say " + spelled("zebracorn", SMALL_CAPITALS, "abcdefghijklmnopqrstuvwyz") + " now"


@pytest.mark.parametrize("split", range(1, len(SMALL_WORD)))
def test_a_streamed_keyword_in_small_capitals_blocks_before_it_leaves(split):
    """Cut anywhere, the word in small capitals ends the stream; none of it went out."""
    events = [chat_event(SMALL_WORD[:split]), chat_event(SMALL_WORD[split:])]
    out, ended = scan_stream(WORDS, events)
    assert ended and chr(SMALL_CAPITALS[-1]) not in out.decode()


def chat_event(piece: str) -> bytes:
    choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
    return b"data: " + orjson.dumps({"id": "c", "model": "m", "choices": [choice]}) + b"\n\n"
