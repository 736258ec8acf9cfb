"""The ip_address and email detectors: every written form of an address is found whole,
and the look-alikes in prose and code are left alone; streamed at any cut as whole."""

import ipaddress
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails.decision import review
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from tests.unit.guardrails.test_window import REDACT_ALL, chunked

IP = Scanner([RuleSource(Rule("ip", DetectorKind.IP_ADDRESS, GuardAction.REDACT))])
EMAIL = Scanner([RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT))])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DNS server 8.8.8.8 is up", "DNS server [REDACTED:ip] is up"),
        ("the receiver 10.1.2.3 saw it", "the receiver [REDACTED:ip] saw it"),
        ("dev 1.2.3.4", "dev [REDACTED:ip]"),
        ("version 1.2.3.4 released", "version 1.2.3.4 released"),
        ("ver 1.2.3.4", "ver 1.2.3.4"),
        ("v 1.2.3.4", "v 1.2.3.4"),
        ("2001:db8::1", "[REDACTED:ip]"),
        ("host 2001:db8::1 down", "host [REDACTED:ip] down"),
        ("at fe80::1ff:fe23:4567:890a.", "at [REDACTED:ip]."),
        ("ping ::1 now", "ping [REDACTED:ip] now"),
        ("fe80::1", "[REDACTED:ip]"),
        ("http://[::1]:8080/", "http://[[REDACTED:ip]]:8080/"),
        ("connect to [::1]:80", "connect to [[REDACTED:ip]]:80"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "[REDACTED:ip]"),
        ("1:2:3:4:5:6:7::", "[REDACTED:ip]"),
        # code and prose that only look like addresses
        ("x[1::2]", "x[1::2]"),
        ("for x in a[::2]:", "for x in a[::2]:"),
        ("std::cerr << 1", "std::cerr << 1"),
        ("Abc::Def", "Abc::Def"),
        ("1:: and ::", "1:: and ::"),
        ("at 12:30:45", "at 12:30:45"),
        ("deadbeef::1", "deadbeef::1"),
    ],
)
def test_ip_addresses(text, expected):
    """IPv4 after any word but a version's, IPv6 in every compressed form, whole."""
    assert review(IP, text).text == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jürgen@example.com now", "mail [REDACTED:email] now"),
        ("üser@x.com", "[REDACTED:email]"),
        ("bob@bücher.de", "[REDACTED:email]"),
        ("ivan@пример.рф.", "[REDACTED:email]."),
        ("bob@example.xn--p1ai", "[REDACTED:email]"),
        ("χρήστης@παράδειγμα.ελ", "[REDACTED:email]"),
        ("npm install lodash@4.17.21", "npm install lodash@4.17.21"),
        ("a@b", "a@b"),
    ],
)
def test_internationalised_email_addresses(text, expected):
    """Letters of other scripts in the local part and the domain: the whole address."""
    assert review(EMAIL, text).text == expected


@settings(max_examples=300, deadline=None)
@given(
    number=st.integers(0, 2**128 - 1),
    word=st.sampled_from(["host", "server", "at", "(", "receiver", "->"]),
)
def test_every_ipv6_address_is_redacted_whole(number, word):
    """Any address in its compressed (shortest) and exploded forms, after a word."""
    address = ipaddress.IPv6Address(number)
    for form in (address.compressed, address.exploded):
        if form.count(":") < 3 and not any(c.isdigit() for c in form):
            continue  # `a::b`, `::`: two colons and no digit read as code
        text = f"{word} {form} end"
        assert review(IP, text).text == f"{word} [REDACTED:ip] end", text


@settings(max_examples=300, deadline=None)
@given(
    number=st.integers(0, 2**32 - 1),
    word=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12),
)
def test_every_ipv4_address_after_a_word_is_redacted(number, word):
    """Only the words `v`, `ver` and `version` make a dotted quad a version number."""
    text = f"{word} {ipaddress.IPv4Address(number)} end"
    expected = text if word in ("v", "ver", "version") else f"{word} [REDACTED:ip] end"
    assert review(IP, text).text == expected


# Latin letters with marks, and Greek and Cyrillic ones (by code point: the linter
# rightly flags look-alikes written out).
OTHER_LETTERS = "".join(map(chr, [*range(0xE0, 0xF7), 0x142, 0x161, *range(0x3B1, 0x3C9)]))
CYRILLIC = "".join(map(chr, range(0x430, 0x450)))
LOCAL = st.text(alphabet="abcxyz0123456789._+-" + OTHER_LETTERS + CYRILLIC, max_size=20)
LABEL = st.text(alphabet="abcxyz0123456789-" + OTHER_LETTERS + CYRILLIC, max_size=15)
TLD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz" + OTHER_LETTERS + CYRILLIC, max_size=6)


@settings(max_examples=300, deadline=None)
@given(local=LOCAL, label=LABEL, tld=TLD)
def test_every_internationalised_address_is_redacted_whole(local, label, tld):
    """No letter of the local part or the domain is left outside the redaction."""
    local, label, tld = "x" + local, label + "y", "zz" + tld
    text = f"write to {local}@{label}.{tld} today"
    assert review(EMAIL, text).text == "write to [REDACTED:email] today"


FRAGMENTS = [
    "DNS server 8.8.8.8",
    "receiver 10.1.2.3",
    "version 1.2.3.4",
    "2001:db8::1",
    "[::1]:80",
    "x[1::2]",
    " ::1",
    "fe80::1ff:fe23:4567:890a",
    "std::cerr",
    "jürgen@example.com",
    "bob@bücher.de",
    "a",
    "1",
]


@st.composite
def texts_and_cuts(draw: st.DrawFn) -> tuple[str, list[str]]:
    words = draw(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=10))
    text = draw(st.sampled_from([" ", ", ", "\n"])).join(words)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(case=texts_and_cuts())
def test_a_stream_cut_anywhere_releases_the_whole_text_result(case):
    """The new forms need look-behind and look-ahead: the window gives them both."""
    text, pieces = case
    released, blocked = chunked(REDACT_ALL, pieces)
    assert blocked is None
    assert released == review(REDACT_ALL, text).text
