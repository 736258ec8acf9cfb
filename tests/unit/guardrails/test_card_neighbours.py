"""A card next to other digits (probe p12, HIGH): card + expiry + CVV, two cards in a row,
`qty 2` before one. The any-grouping pattern ran on into the neighbouring digits, failed
Luhn and hid the card; the layouts cards are written in are searched on their own."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.guardrails.decision import review
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from tests.unit.guardrails.test_stream_scanner import chat_event, chat_text, run

CARDS = Scanner([RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.REDACT))])
WITH_IBAN = Scanner(
    [
        RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.REDACT)),
        RuleSource(Rule("iban", DetectorKind.IBAN, GuardAction.REDACT)),
    ]
)
R = "[REDACTED:credit_card]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Visa 4111 1111 1111 1111 09/27 cvv 123", f"Visa {R} 09/27 cvv 123"),
        ("4111111111111111 12/28 737", f"{R} 12/28 737"),
        ("4111 1111 1111 1111 737", f"{R} 737"),
        ("cards 4111 1111 1111 1111 5555 5555 5555 4444", f"cards {R} {R}"),
        ("qty 2 4111111111111111", f"qty 2 {R}"),
        ("on 12/05 4111 1111 1111 1111", f"on 12/05 {R}"),
        ("room 2 4111 1111 1111 1111", f"room 2 {R}"),
        ("tel 5 4111-1111-1111-1111", f"tel 5 {R}"),
        ("4111-1111-1111-1111-5", f"{R}-5"),
        ("v2 4111 1111 1111 1111", f"v2 {R}"),
        ("amex 3782 822463 10005 exp 11/29 cid 1234", f"amex {R} exp 11/29 cid 1234"),
        ("diners 3056 930902 5904 04/30", f"diners {R} 04/30"),
        ("19 digits 6011 1111 1111 1111 110 ok", f"19 digits {R} ok"),
        # still found where they were
        ("Visa 4111 1111 1111 1111 exp 09/27", f"Visa {R} exp 09/27"),
        ("card 4111-1111-1111-1111", f"card {R}"),
        ("41 11 11 11 11 11 11 11", R),
    ],
)
def test_a_card_beside_other_digits_is_redacted(text: str, expected: str) -> None:
    assert review(CARDS, text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 5 shipped",  # fails Luhn
        "IBAN DE89 3704 0044 0532 0130 00",
        "ref 1234 5678 9012 3456 7890 1234",
        "tracking 1234567890123",
    ],
)
def test_digits_that_are_no_card_stay(text: str) -> None:
    assert review(CARDS, text).text == text


@given(st.text(alphabet="0123456789 -/", max_size=60))
def test_iban_digits_are_never_a_card(noise: str) -> None:
    """The groups of a valid IBAN hold 16-digit windows some of which pass Luhn: with
    both detectors on, the IBAN is redacted whole and never as a card."""
    text = "pay DE44 5001 0517 5407 3249 31 now " + noise
    result = review(WITH_IBAN, text)
    assert "pay [REDACTED:iban] now" in result.text


STREAMED = "card 4111 1111 1111 1111 09/27 cvv 123 done"


@pytest.mark.parametrize("cut", range(1, len(STREAMED)))
def test_a_card_beside_an_expiry_is_redacted_in_a_stream_cut_anywhere(cut: int) -> None:
    events = [chat_event(STREAMED[:cut]), chat_event(STREAMED[cut:]), chat_event(finish="stop")]
    out, end, _ = run(CARDS, "chat", events)
    assert end is None
    assert chat_text(out) == f"card {R} 09/27 cvv 123 done"
