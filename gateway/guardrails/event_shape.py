"""The learned shape of a stream's events: the bytes around the text, and its ending.

Most events of a stream are alike but for their text: the first one parsed is encoded
again with the text cut out (`learn_shape`), and later events that are the same bytes
around a plain text (`is_plain`) are scanned without a JSON parse or a re-encoding
(stream_scanner.py matches them, flat, on its hot path). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

Key = tuple[Any, ...]


def is_plain(text: str) -> bool:
    """Whether JSON writes `text` as it is: no quote or backslash, no control character.
    (A piece that is not would end the string or escape there, or JSON refuses it raw;
    the parsed path then takes the event.) Builtins only, no regex: this runs twice per
    event, and every C call a stream makes per event costs cache misses in a busy server."""
    return text.isprintable() and '"' not in text and "\\" not in text


SLOT = "\x00slot\x00"  # encodes as `\u0000slot\u0000`: nothing else in an event can
_SLOT_BYTES = orjson.dumps(SLOT)[1:-1]
_END_SLOT = "\x00end\x00"  # where a learned shape's finish reason goes
_END_SLOT_BYTES = orjson.dumps(_END_SLOT)[1:-1]
MAX_SHAPES_LEARNED = 4  # an upstream whose events never repeat a shape stops being learned


def _without_ending(encoded: bytes) -> tuple[bytes, bytes | None, bytes]:
    """An event encoded with the text and the finish reason slotted, in that order: the
    event with the reason `null` (as it came), and the bytes between the two slots and
    after the second (None, b"" when the slots are not so)."""
    head, _, tail = encoded.partition(_SLOT_BYTES)
    mid, found, rest = tail.partition(_END_SLOT_BYTES)
    if not found or encoded.count(_END_SLOT_BYTES) != 1:
        return encoded, None, b""
    if not (mid.endswith(b'"') and rest.startswith(b'"')):
        return encoded, None, b""
    return head + _SLOT_BYTES + mid[:-1] + b"null" + rest[1:], mid, rest


@dataclass(frozen=True, slots=True)
class Shape:
    """An event with one text in it (no ending, one choice), as our own encoder writes
    it, cut where the text goes: `head` and `tail`. An event that is `head + S + tail`
    with S plain (`is_plain`) is exactly the event we learned from with S as its
    text: its JSON parse would give what the shape's key names, and nothing else.

    A chat or completions shape also knows its ending: the same event with a finish
    reason R, `head + S + mid + R + rest` (S and R plain)."""

    head: bytes
    tail: bytes
    key: Key
    mid: bytes | None = None
    rest: bytes = b""


def learn_shape(
    parsed: dict[str, Any],
    owner: dict[str, Any],
    name: str,
    key: Key,
    prefix: bytes,
    slotted: Any = SLOT,
    choice: dict[str, Any] | None = None,
) -> Shape | None:
    """The shape of the events that follow this one: this event with `owner[name]`
    replaced by `slotted` (its text, or the dict holding it, with the text cut out); and,
    given the `choice`, its ending (the finish reason slotted). None when the upstream
    sent our marker. `owner[name]` is put back before this returns."""
    kept, owner[name] = owner[name], slotted
    mid: bytes | None = None
    rest = b""
    if choice is not None and "finish_reason" in choice and choice["finish_reason"] is None:
        choice["finish_reason"] = _END_SLOT
        encoded, mid, rest = _without_ending(orjson.dumps(parsed))
        choice["finish_reason"] = None
    if mid is None:  # no ending learned (none, or the reason comes before the text)
        encoded = orjson.dumps(parsed)
    owner[name] = kept
    if encoded.count(_SLOT_BYTES) != 1:  # the upstream sent our marker: learn nothing
        return None
    head, _, tail = encoded.partition(_SLOT_BYTES)
    return Shape(
        prefix + b"data: " + head, tail + b"\n\n", key, mid, rest + b"\n\n" if mid else b""
    )
