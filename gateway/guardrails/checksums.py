"""Checksums and shape tests that turn a regex hit into a finding: Luhn, IBAN
mod-97, SSN ranges, entropy. Plain functions over strings; no I/O."""

from __future__ import annotations

import ipaddress
import math
from collections import Counter

# Lengths of the IBANs most often seen (ISO 13616 registry); others: 15-34.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27,
    "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26,
    "IT": 27, "KW": 30, "KZ": 20, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "MT": 31, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PT": 25, "QA": 29, "RO": 24,
    "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "UA": 29,
}  # fmt: skip
# Issuer prefixes of the card networks and the lengths each issues; a Luhn-valid
# number with another prefix or length is an order id, not a card.
CARD_LENGTHS = (
    (("34", "37"), (15,)),  # American Express
    (("4",), (13, 16, 19)),  # Visa
    (("51", "52", "53", "54", "55", "22", "23", "24", "25", "26", "27"), (16,)),  # Mastercard
    (("6011", "64", "65"), (16, 19)),  # Discover
    (("35",), (16, 17, 18, 19)),  # JCB
    (("30", "36", "38", "39"), (14, 16, 19)),  # Diners Club
    (("62",), (16, 17, 18, 19)),  # UnionPay
)


def digits_of(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(text: str) -> bool:
    """13-19 digits, one kind of separator, a network's prefix, and Luhn."""
    separators = {c for c in text if not c.isdigit()}
    if len(separators) > 1:
        return False
    digits = digits_of(text)
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    lengths = next((n for prefixes, n in CARD_LENGTHS if digits.startswith(prefixes)), ())
    return len(digits) in lengths and luhn_ok(digits)


def is_iban(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def is_us_ssn(text: str) -> bool:
    digits = digits_of(text)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return (
        len(digits) == 9
        and area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
    )


def is_phone(text: str) -> bool:
    return 7 <= len(digits_of(text)) <= 15


def is_ip_address(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    # "::" and "1::" are valid addresses but mostly code (C++ scopes, slices).
    return address.version == 4 or text.count(":") >= 3


def is_ipv6_address(text: str, start: int, end: int) -> bool:
    """`text[start:end]` is an IPv6 address, not code that looks like one. With three
    colons or more it is; with two (`fe80::1`, `::1`) only when it holds a digit
    (`Abc::Def` is a scope), ends in a group (`1::` is a slice), is not inside a slice's
    brackets (`a[1::2]`; but `http://[::1]` and `to [::1]:80` are addresses) and, starting
    with `::`, does not follow a name (`std::cerr`)."""
    address = text[start:end]
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    if address.count(":") >= 3:
        return True
    before = text[start - 1] if start > 0 else ""
    # A slice's bracket follows what it indexes (`a[`, `f(x)[`); decided on what comes
    # before only, so that a stream need not wait for what follows to know.
    opener = text[start - 2] if start > 1 else ""
    in_slice = before == "[" and (opener.isalnum() or opener in "_)]")
    return (
        any(c.isdigit() for c in address)
        and not address.endswith(":")
        and not in_slice
        and not (address.startswith(":") and (before.isalnum() or before == "_"))
    )


def entropy_bits(text: str) -> float:
    """Shannon entropy per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def looks_random(text: str, min_bits: float = 3.0) -> bool:
    """Mixed character classes and high entropy: a generated credential, not a word."""
    classes = sum(
        (
            any(c.islower() for c in text),
            any(c.isupper() for c in text),
            any(c.isdigit() for c in text),
        )
    )
    return classes >= 2 and entropy_bits(text) >= min_bits
