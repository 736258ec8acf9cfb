"""What walking a body costs against check.py's inline budget (INLINE_CHARS), in ASCII
characters scanned's worth: the work besides scanning text, which a body of numbers,
empty objects or empty messages is made of. Pure.

A text function may have a `spend(weight)` method (check.py's inline reviewer): the
walkers (texts.py, json_texts.py) call it before work proportional to a list's length
or a JSON text's escapes, so an inline check gives up within its budget, however the
body's bytes are spent. Measured against a character scanned (2-5 ns): a JSON element
walked ~1-3 µs, a message or part ~12-23 µs, an escape decoded ~0.7 µs, a character of
JSON text searched for numbers in exponent form ~20 ns (Python's `re`), one of a text
with such numbers read ~0.3 µs, one laid out ~0.1 µs.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.guardrails.json_layout import has_exponent

Spend = Callable[[int], None]

TEXT_COST = 2048  # one text reviewed: the call, its fold, the combined pass
ITEM_COST = 512  # one element of a JSON value (a list's item, a mapping's entry)
ENTRY_COST = 4096  # one message, part, tool or call of a body (texts.py's lists)
ESCAPE_COST = 256  # one escape of a JSON text decoded (json_escapes.Escaped)
SEARCH_CHAR_COST = 8  # a character of JSON text searched for numbers in exponent form
EXPONENT_CHAR_COST = 128  # a character of JSON text laid out to read its numbers
LAYOUT_CHAR_COST = 32  # a character of JSON text laid out to redact it


def spend_reading(spend: Spend, text: str) -> None:
    """Charges making a JSON text's view (its numbers searched for and read, its escapes
    decoded), the search's own cost before it runs."""
    spend(len(text) * SEARCH_CHAR_COST)
    spend(text.count("\\") * ESCAPE_COST)
    if has_exponent(text):
        spend(len(text) * EXPONENT_CHAR_COST)


def layout_cost(text: str) -> int:
    """Laying a JSON text out to write a redaction into it (json_layout.Layout)."""
    return len(text) * LAYOUT_CHAR_COST
