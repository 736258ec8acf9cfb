"""An upstream's whole answer read as its client's reader would read it.

orjson refuses some JSON that Python's `json` (the openai SDK's reader) takes: a lone
UTF-16 surrogate escape (`"\\ud83d"`, half an emoji, which servers that cut strings by
UTF-16 unit send), NaN and Infinity, integers past 64 bits. Such an answer was generated
and billed, so it is served, not failed over (probe p16: a 502 with 0 tokens booked, and
the SDK's two retries billed twice more): read by `json`, each lone surrogate made U+FFFD
(what a UTF-8 reader shows for it; RE2 and orjson take no surrogate), and written anew.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.guardrails.stream_values import encode
from gateway.sse import UNREADABLE, read_leniently

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_DEPTH = 200  # deeper than any answer: no recursion past Python's limit


def read_answer(body: bytes) -> tuple[Any, bytes]:
    """The answer's JSON and the bytes to relay (the body itself when orjson reads it).
    ValueError when it is no JSON."""
    try:
        return orjson.loads(body), body
    except orjson.JSONDecodeError:
        pass
    value = read_leniently(body)
    if value is UNREADABLE:
        raise ValueError("the answer is no JSON")
    value = _without_lone_surrogates(value, 0)
    return value, encode(value)


def _without_lone_surrogates(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_lone_surrogates(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {
            _LONE_SURROGATE.sub("\ufffd", key): _without_lone_surrogates(item, depth + 1)
            for key, item in value.items()
        }
    return value
