"""What the output stream scanner reads of an event besides its growing texts: the
choice an `index` names however an upstream spelled it, the event's JSON however an
upstream wrote it, and any other value, reviewed whole. Pure: no I/O.

An upstream is not always OpenAI: it may spell a choice's index `"0"` or `0.0`, write
a number orjson refuses (`1e400`, NaN) or a lone surrogate escape, or put a text under
a name of its own. Its client reads all of these (JavaScript indexes a choice by the
string, Python's `json` reads NaN), so none may carry a text past the scan.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from gateway.guardrails.json_texts import TextFn
from gateway.guardrails.scanner import apply_redactions

ODD_INDEX = "?"  # the one choice every index that names no number belongs to
# Deeper than this, a value is reviewed as its JSON text, in one piece: a walk this deep
# would run out of Python's stack, and no API nests a text so deep.
_MAX_DEPTH = 64


def choice_key(index: Any, position: int) -> Any:
    """The choice `index` names, as one key however it is spelled: a client may read
    `"0"`, `" 0"`, `0.0` or `false` as choice 0 (Python's `int()`, JavaScript's array
    lookup), so their texts are one text, scanned together. A missing or null index: the
    choice's place in the list. Anything else (a word, an object, 1.5) names the one odd
    choice: its text is scanned like any other, never passed on raw."""
    if type(index) is int:  # the common case, first
        return index
    if index is None:
        return position
    if isinstance(index, int):  # a bool
        return int(index)
    if isinstance(index, float):
        return int(index) if index.is_integer() else ODD_INDEX
    if isinstance(index, str):
        try:
            return int(index)  # strips spaces, reads "00" and "+1"
        except ValueError:
            return ODD_INDEX
    return ODD_INDEX


def encode(value: Any) -> bytes:
    """`value` as JSON: orjson's; Python's `json` (all ASCII) for what orjson refuses to
    write (an integer past 64 bits, a lone surrogate), which only `read_leniently` gives."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


def review_value(value: Any, fn: TextFn, depth: int = 0) -> Any:
    """`value` with every string in it, keys too, rewritten as `fn` says (the same object
    when none changed). Unlike a request's JSON (json_texts.py) nothing here is a name the
    upstream matches: the client only reads it."""
    if isinstance(value, str):
        spans = fn(value)
        return apply_redactions(value, spans) if spans else value
    if not isinstance(value, dict | list):
        return value
    if depth > _MAX_DEPTH:
        text = encode(value).decode()
        spans = fn(text)
        return apply_redactions(text, spans) if spans else value
    if isinstance(value, list):
        out = [review_value(item, fn, depth + 1) for item in value]
        return out if any(a is not b for a, b in zip(out, value, strict=True)) else value
    changed = False
    mapping: dict[Any, Any] = {}
    for key, item in value.items():
        name = review_value(key, fn, depth + 1)
        checked = review_value(item, fn, depth + 1)
        changed = changed or name is not key or checked is not item
        mapping[name] = checked
    return mapping if changed else value
