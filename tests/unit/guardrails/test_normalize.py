"""Folding's quick check is exact: a text it passes unfolded is one the full fold leaves
alone, so no invisible or combining character slips past a rule."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails import fold_table
from gateway.guardrails.check import check_request
from gateway.guardrails.decision import Blocked
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.normalize import changed_ranges, fold, fold_slowly
from gateway.guardrails.scanner import Rule, RuleSource, Scanner

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
