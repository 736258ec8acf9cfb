"""The combined scan: detectors, checksums, folding of look-alikes, redaction spans."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails.check import check_answer, check_request
from gateway.guardrails.decision import Blocked, Passed, review
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.normalize import is_plain_ascii
from gateway.guardrails.scanner import Rule, RuleSource, Scanner


def scanner(*specs: tuple[DetectorKind, GuardAction], pattern: str | None = None) -> Scanner:
    sources = [RuleSource(Rule(kind.value, kind, action)) for kind, action in specs]
    if pattern is not None:
        sources.append(
            RuleSource(Rule("custom", DetectorKind.PATTERN, GuardAction.REDACT), pattern)
        )
    return Scanner(sources)


REDACT_ALL = scanner(
    *[
        (k, GuardAction.REDACT)
        for k in (
            DetectorKind.SECRETS,
            DetectorKind.EMAIL,
            DetectorKind.PHONE,
            DetectorKind.CREDIT_CARD,
            DetectorKind.IBAN,
            DetectorKind.US_SSN,
            DetectorKind.IP_ADDRESS,
        )
    ]
)


# An Azure storage account key: 64 random bytes in base64, made up here.
AZURE_KEY = (
    "t8Hq2ZmV0pLrX9cW4bN7yKdE1sJfA6gU3oQiT5vRzC2xM8nB0wY4eL7kP9hD1aS6jF3gG5uI2oV8rN4mQ7wZ0=="
)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("key AKIAZ7Q2W9X4C6V8B1N3 here", "secrets"),
        ("ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "secrets"),
        ("xoxb-1234567890-abcdefghij", "secrets"),
        ("token hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567 ok", "secrets"),
        ("glpat-" + "x1Y2z3W4v5U6t7S8r9Q0", "secrets"),
        ("npm_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "secrets"),
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + AZURE_KEY,
            "secrets",
        ),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "secrets"),
        ('api_key = "q8Xr2LmZ7vK1pT9w"', "secrets"),
        ("write to jane.doe@corp.example.com", "email"),
        ("call +1 415 555 0132 today", "phone"),
        ("card 4111-1111-1111-1111", "credit_card"),
        ("IBAN DE89 3704 0044 0532 0130 00", "iban"),
        ("ssn 123-45-6789", "us_ssn"),
        ("host 10.20.30.40 down", "ip_address"),
    ],
)
def test_each_detector_finds_its_kind(text, rule):
    """Each built-in detector fires on a typical value of its kind."""
    result = review(REDACT_ALL, text)
    assert rule in [r.name for r in result.fired]
    assert f"[REDACTED:{rule}]" in result.text


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 shipped",  # fails Luhn
        "IBAN DE89 3704 0044 0532 0130 01",  # fails mod-97
        "ssn 000-12-3456",  # area 000 is never issued
        "version 1.2.3.4 released",  # a version, not an address
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        'api_key = "YOUR_API_KEY_HERE"',  # a placeholder, not a secret
        "npm install lodash@4.17.21",
        "",
    ],
)
def test_near_misses_are_not_findings(text):
    """Look-alikes that fail their checksum or shape pass untouched."""
    result = review(REDACT_ALL, text)
    assert result.fired == () and result.text == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # zero-width space inside the address, full-width letters, a Cyrillic o (U+043E)
        (
            "mail bob\u200b@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.c\u043em now",
            "mail [REDACTED:email] now",
        ),
        # full-width digits in a card number
        (
            "card \uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 ok",
            "card [REDACTED:credit_card] ok",
        ),
        # a zero-width joiner inside an AWS key, Greek capitals at its start
        ("key \u0391\u039aIAZ7Q2W9\u200dX4C6V8B1N3 end", "key [REDACTED:secrets] end"),
        # soft hyphen and combining mark inside an email
        ("x a\u00adlice\u0301@corp.example.com y", "x [REDACTED:email] y"),
    ],
)
def test_look_alikes_are_folded_and_the_original_span_is_redacted(text, expected):
    """Normalised before scanning; the redaction covers the original characters."""
    assert review(REDACT_ALL, text).text == expected


def test_a_block_wins_and_nothing_is_redacted():
    """A block decision carries the rule; the text is not rewritten."""
    s = scanner((DetectorKind.SECRETS, GuardAction.BLOCK), (DetectorKind.EMAIL, GuardAction.REDACT))
    decision = check_request(
        s,
        "chat",
        {"messages": [{"role": "user", "content": "a@b.example.org AKIAZ7Q2W9X4C6V8B1N3"}]},
    )
    assert isinstance(decision, Blocked) and decision.rule == "secrets"


def test_a_clean_request_is_the_same_object():
    """Nothing fired: the body is not copied."""
    body = {"messages": [{"role": "user", "content": "hello"}]}
    decision = check_request(REDACT_ALL, "chat", body)
    assert isinstance(decision, Passed) and decision.body is body and decision.hits == ()


def test_an_empty_message_and_odd_shapes_pass():
    """Empty strings, None content and non-text parts are left alone."""
    body = {
        "messages": [
            {"role": "user", "content": ""},
            {"role": "assistant", "content": None},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
            "junk",
        ]
    }
    decision = check_request(REDACT_ALL, "chat", body)
    assert isinstance(decision, Passed) and decision.body is body


def test_tool_call_arguments_in_a_whole_answer_are_redacted():
    """Output: a model's tool-call arguments are scanned like its content."""
    payload = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {
                                "name": "pay",
                                "arguments": '{"card": "4111111111111111"}',
                            },
                        }
                    ],
                },
            }
        ]
    }
    decision = check_answer(REDACT_ALL, "chat", payload)
    assert isinstance(decision, Passed)
    args = decision.body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert args == '{"card": "[REDACTED:credit_card]"}'
    assert payload["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"].endswith(
        '1111"}'
    )


def test_responses_output_text_is_redacted():
    payload = {
        "output": [
            {"type": "message", "content": [{"type": "output_text", "text": "to a@b.example.org"}]}
        ]
    }
    decision = check_answer(REDACT_ALL, "responses", payload)
    assert decision.body["output"][0]["content"][0]["text"] == "to [REDACTED:email]"


def test_a_catastrophic_pattern_runs_in_linear_time():
    """(a+)+$ on 100k 'a's and a '!' would backtrack for ages in Python's re; RE2 is linear."""
    s = scanner(pattern="(a+)+$")
    text = "a" * 100_000 + "!"
    started = time.perf_counter()
    assert review(s, text).fired == ()
    assert time.perf_counter() - started < 1.0


def test_a_one_megabyte_prompt_is_scanned_quickly():
    """A 1 MB prompt with one email at its end: found, in well under a second."""
    text = ("lorem ipsum dolor sit amet " * 40_000)[:1_000_000] + " a@b.example.org"
    started = time.perf_counter()
    result = review(REDACT_ALL, text)
    assert time.perf_counter() - started < 1.0
    assert result.text.endswith("[REDACTED:email]")


def test_overlapping_findings_merge_into_one_redaction():
    s = scanner((DetectorKind.EMAIL, GuardAction.REDACT), pattern=r"corp\.example\.com\b and more")
    assert review(s, "x a@corp.example.com and more y").text == "x [REDACTED:email] y"


STREAM_FRAGMENTS = (
    "Hello there, ",
    " ",
    "1",
    "4111 1111 1111 1111",
    "jane.doe@corp.example.com",
    "a@b",
    ".co",
    "AKIA",
    "AKIAZ7Q2W9X4C6V8B1N3",
    "sk-",
    'api_key = "q8Xr2LmZ7vK1pT9w"',
    "10.20.30.40",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n",
    "-----END RSA PRIVATE KEY-----",
    "\uff14\uff11",  # full-width digits: the folded path
    "\u200b",
)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(STREAM_FRAGMENTS), min_size=1, max_size=8),
    data=st.data(),
)
def test_the_stream_scan_agrees_with_find_and_in_progress_from(pieces, data):
    """`scan_stream` (which sends ASCII text straight to RE2) finds what `find` finds and
    holds from where `in_progress_from` says, on ASCII and folded text alike."""
    text = "".join(pieces)
    start = data.draw(st.integers(0, len(text)))
    final = data.draw(st.booleans())
    found, hold, window = REDACT_ALL.scan_stream(text, start, final=final)
    assert found == REDACT_ALL.find(text, start)
    assert hold == (len(text) if final else REDACT_ALL.in_progress_from(text, start))
    if is_plain_ascii(text) and not final:
        assert window == max(0, len(text) - REDACT_ALL.window_chars - 1)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(STREAM_FRAGMENTS), min_size=1, max_size=8),
    data=st.data(),
)
def test_the_clean_hold_is_the_stream_scans_hold_on_text_without_matches(pieces, data):
    """`clean_hold` answers (>= 0) only for ASCII text with no match anywhere, and then
    with `scan_stream`'s hold; prose answers."""
    text = "".join(pieces)
    start = data.draw(st.integers(0, len(text)))
    hold = REDACT_ALL.clean_hold(text, start)
    if hold < 0:
        assert not text.isascii() or REDACT_ALL._set.Match(text)  # a pattern matched
    else:
        assert REDACT_ALL.find(text) == []
        window = max(0, len(text) - REDACT_ALL.window_chars - 1)
        assert REDACT_ALL.scan_stream(text, start, final=False) == ([], hold, window)
    assert REDACT_ALL.clean_hold("the quick brown", 4) == len("the quick ")


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 00 DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000 GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32 and DE89 3704 0044 0532 0130 00",
    ],
)
def test_ibans_side_by_side_are_each_found(text):
    """A match that ran on through a space into the next IBAN failed mod-97 and hid both
    (the stream, cut between them, found the second: the window's property test)."""
    result = review(REDACT_ALL, text)
    assert result.text.count("[REDACTED:iban]") == 2, result.text


CLEAN_OR_NOT = st.text(
    alphabet=st.sampled_from(list("ab @.-_:=0123456789AKIZ\n\t\x00\x1bé\uff11\uff53")), max_size=60
) | st.sampled_from(
    ["write to a@b.example", "card 4111 1111 1111 1111", "key AKIAZ7Q2W9X4C6V8B1N3", "hi"]
)


# Telltales `@` and digits: a text with neither is cleared without a scan.
CARDS_AND_EMAIL = scanner(
    (DetectorKind.CREDIT_CARD, GuardAction.REDACT), (DetectorKind.EMAIL, GuardAction.BLOCK)
)


@given(CLEAN_OR_NOT)
def test_a_text_called_clean_has_no_finding(text: str) -> None:
    """`is_clean` (the reviewers' shortcut past `find`) never hides a finding: a text it
    clears is one `find` finds nothing in; plain ASCII prose with no match is cleared."""
    for side in (REDACT_ALL, CARDS_AND_EMAIL):
        if side.is_clean(text):
            assert side.find(text) == []
    assert REDACT_ALL.is_clean("the answer is short and plain.")
    assert not REDACT_ALL.is_clean("write to a@b.example")
    assert not REDACT_ALL.is_clean("\uff57\uff52\uff49\uff54\uff45")  # folded first: find's to say
    assert Scanner([]).is_clean("a@b.example")
    assert CARDS_AND_EMAIL.is_clean("no digit, no at sign: " + "prose " * 100)
    assert not CARDS_AND_EMAIL.is_clean("card 4111 1111 1111 1111")
