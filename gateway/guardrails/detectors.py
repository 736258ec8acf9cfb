"""The built-in detectors: RE2 patterns, the group to redact, the longest match,
and the check that turns a regex hit into a finding (Luhn, mod-97, entropy).

Patterns are RE2 syntax (no look-around) and ASCII: text is normalised first
(normalize.py), so full-width digits and look-alike letters reach them as ASCII.
Every pattern declares its longest match: the stream scanner holds back that much.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from gateway.guardrails import checksums
from gateway.guardrails.kinds import DetectorKind

# (full normalised text, start, end of the span to redact) → is this hit a finding?
Check = Callable[[str, int, int], bool]
VALUE = "v"  # the named group a pattern redacts, when not the whole match


@dataclass(frozen=True, slots=True)
class PatternSpec:
    regex: str
    max_chars: int
    check: Check | None = None


def _on_match(test: Callable[[str], bool]) -> Check:
    return lambda text, start, end: test(text[start:end])


def _secret_value(text: str, start: int, end: int) -> bool:
    return checksums.looks_random(text[start:end])


_VERSION_WORDS = ("version ", "version", "ver ", "ver", "v ", "v")


def _ip_check(text: str, start: int, end: int) -> bool:
    # "version 1.2.3.4" and "v1.2.3.4" are versions, and a fifth part makes it no address;
    # the word must stand alone ("server 8.8.8.8", "receiver 10.1.2.3" are addresses).
    before = text[max(0, start - len(_VERSION_WORDS[0])) : start].lower()
    for word in _VERSION_WORDS:
        if before.endswith(word):
            at = start - len(word)
            if at == 0 or not text[at - 1].isalnum():
                return False
            break
    if text[end : end + 2][:1] == "." and text[end + 1 : end + 2].isdigit():
        return False
    if ":" in text[start:end]:
        return checksums.is_ipv6_address(text, start, end)
    return checksums.is_ip_address(text[start:end])


def _card_check(text: str, start: int, end: int) -> bool:
    # Any grouping: digit groups that run on past the number on either side (an IBAN, a
    # phone list, a table of ids) are part of something longer, not a card. A card
    # written as cards are, next to other digits, is found by CARD_LAYOUTS.
    before, after = text[max(0, start - 2) : start], text[end : end + 2]
    if len(before) == 2 and before[1] in " -" and before[0].isdigit():
        return False
    if len(after) == 2 and after[0] in " -" and after[1].isdigit():
        return False
    return checksums.is_card_number(text[start:end])


# An IBAN's head and the groups of four after it, up to a candidate: IBAN digits, not a card.
_IBAN_BEFORE = re.compile(r"\b[A-Z]{2}\d{2}(?: [A-Z0-9]{4})* $")
IBAN_LOOKBACK = 40  # the head and up to seven groups


def _card_layout_check(text: str, start: int, end: int) -> bool:
    if text[start - 1 : start] == " " and _IBAN_BEFORE.search(
        text, max(0, start - IBAN_LOOKBACK), start
    ):
        return False
    return checksums.is_card_number(text[start:end])


def _card_layouts() -> tuple[PatternSpec, ...]:
    """A card as cards are written (one run of digits; 4-4-4-4, 4-4-4-4-3, 4-4-4-1..3;
    Amex 4-6-5, Diners 4-6-4; spaces or dashes), whatever digits stand beside it: card,
    expiry and CVV, two cards in a row, `qty 2` before one (probe p12: the any-grouping
    pattern ran on into the neighbours, failed Luhn and hid the card). Each layout is
    searched on its own, so a longer one failing its checksum does not hide a shorter."""
    specs = [PatternSpec(r"\b\d{13,19}\b", 19, _card_layout_check)]
    for sep in (" ", "-"):
        for layout, chars in (
            (rf"\d{{4}}(?:{sep}\d{{4}}){{2}}{sep}\d{{1,4}}", 19),
            (rf"\d{{4}}(?:{sep}\d{{4}}){{3}}{sep}\d{{3}}", 23),
            (rf"\d{{4}}{sep}\d{{6}}{sep}\d{{4,5}}", 17),
        ):
            specs.append(PatternSpec(rf"\b{layout}\b", chars, _card_layout_check))
    return tuple(specs)


CARD_LAYOUTS = _card_layouts()


_KEY_WORDS = (
    r"(?:api[_-]?key|apikey|secret|token|passw(?:or)?d|passwd|pwd|credentials?|"
    r"access[_-]?key|account[_-]?key|private[_-]?key|auth)"
)

SECRETS = (
    # AWS access key ids
    PatternSpec(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b", 20),
    # GitHub tokens (classic and fine-grained)
    PatternSpec(r"\bgh[pousr]_[A-Za-z0-9]{36,251}\b", 255),
    PatternSpec(r"\bgithub_pat_[A-Za-z0-9_]{22,244}\b", 255),
    # Slack tokens and incoming webhooks
    PatternSpec(r"\bxox[abposr]-[A-Za-z0-9-]{10,250}", 255),
    PatternSpec(r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,120}", 160),
    # OpenAI (sk-, sk-proj-, sk-svcacct-) and Anthropic (sk-ant-) keys
    PatternSpec(r"\bsk-[A-Za-z0-9_-]{32,250}", 253, _secret_value),
    # Hugging Face, GitLab personal access and npm tokens
    PatternSpec(r"\bhf_[A-Za-z0-9]{30,64}\b", 67),
    PatternSpec(r"\bglpat-[A-Za-z0-9_-]{20,64}\b", 70),
    PatternSpec(r"\bnpm_[A-Za-z0-9]{36,64}\b", 68),
    # Google API keys, Stripe secret and restricted keys
    PatternSpec(r"\bAIza[0-9A-Za-z_-]{35}", 39),
    PatternSpec(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{24,99}\b", 107),
    # PEM private key blocks: the whole block, or from the header on if cut
    PatternSpec(
        r"-----BEGIN[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----(?s:.)*?"
        r"-----END[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----",
        4096,
    ),
    PatternSpec(r"-----BEGIN[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----[A-Za-z0-9+/=\s]*", 4096),
    # JSON Web Tokens
    PatternSpec(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", 2048),
    # A high-entropy value right after a key-like word: `api_key = "..."`
    PatternSpec(
        rf"(?i){_KEY_WORDS}[A-Za-z0-9_-]{{0,20}}[\"']?\s{{0,3}}(?:[:=]|=>|:=)\s{{0,3}}[\"']?"
        rf"(?P<{VALUE}>[A-Za-z0-9/+_.=~-]{{16,200}})",
        260,
        _secret_value,  # on the value group: a placeholder like YOUR_API_KEY_HERE passes
    ),
)

# IPv6, every compressed form (RFC 4291 2.2): the forms with the most groups after `::`
# come first, since RE2 takes the first alternative that matches, not the longest.
_H = "[0-9A-Fa-f]{1,4}"
IPV6 = (
    rf"(?:\b(?:{_H}:){{7}}{_H}\b"
    rf"|\b{_H}:(?::{_H}){{1,6}}\b"
    rf"|\b(?:{_H}:){{1,2}}(?::{_H}){{1,5}}\b"
    rf"|\b(?:{_H}:){{1,3}}(?::{_H}){{1,4}}\b"
    rf"|\b(?:{_H}:){{1,4}}(?::{_H}){{1,3}}\b"
    rf"|\b(?:{_H}:){{1,5}}(?::{_H}){{1,2}}\b"
    rf"|\b(?:{_H}:){{1,6}}:{_H}\b"
    rf"|:(?::{_H}){{1,7}}\b"
    rf"|\b(?:{_H}:){{1,7}}:)"
)
# E-mail addresses, internationalised ones too (RFC 6531): letters of other scripts in
# the local part and the domain, and punycode top-level domains. No `\b` at either end:
# RE2's is ASCII-only, so `jürgen@` would match from `rgen@` and `.рф` never end.
_LETTERS = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02af\u0370-\u03ff\u0400-\u052f"
_EMAIL_LOCAL = f"[{_LETTERS}0-9._%+-]"
_EMAIL_LABEL = f"[{_LETTERS}0-9-]"
EMAIL = (
    rf"{_EMAIL_LOCAL}{{1,64}}@(?:{_EMAIL_LABEL}{{1,63}}\.){{1,4}}"
    rf"(?:xn--[A-Za-z0-9-]{{1,59}}|[{_LETTERS}]{{2,24}})"
)

BUILT_IN: dict[DetectorKind, tuple[PatternSpec, ...]] = {
    DetectorKind.SECRETS: SECRETS,
    DetectorKind.EMAIL: (PatternSpec(EMAIL, 345),),
    DetectorKind.PHONE: (
        PatternSpec(
            r"(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)|\d{1,4})(?:[ .-]?\d{2,4}){2,4}\b)"
            r"|(?:\(\d{3}\) ?\d{3}[-. ]\d{4}\b)|(?:\b\d{3}[-.]\d{3}[-.]\d{4}\b)",
            32,
            _on_match(checksums.is_phone),
        ),
    ),
    DetectorKind.CREDIT_CARD: (
        PatternSpec(r"\b(?:\d[ -]?){12,18}\d\b", 37, _card_check),
        *CARD_LAYOUTS,
    ),
    DetectorKind.IBAN: (
        # Written whole, or in groups of four with single spaces (the last 1-4): a space
        # anywhere let one match run on into the next IBAN, fail mod-97 and hide both.
        PatternSpec(
            r"\b[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)\b",
            64,
            _on_match(checksums.is_iban),
        ),
    ),
    DetectorKind.US_SSN: (
        PatternSpec(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b", 11, _on_match(checksums.is_us_ssn)),
    ),
    DetectorKind.IP_ADDRESS: (
        PatternSpec(
            r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
            15,
            _ip_check,
        ),
        PatternSpec(IPV6, 45, _ip_check),
    ),
}
