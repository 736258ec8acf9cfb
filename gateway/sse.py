"""Server-sent events as OpenAI-style upstreams write them: one `data:` line per event.

Small byte-level helpers shared by the providers that split a stream into
events and the relay that reads them. The SSE grammar allows `data:` with or
without a space, CRLF, LF or CR line ends, and comment lines (`: ping`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

DONE_PAYLOAD = b"[DONE]"
UNREADABLE = object()  # a payload that is no JSON any reader takes
EVENT_END = b"\n\n"
CR, LF = 13, 10  # byte values


def data_of(event: bytes) -> bytes | None:
    """The payload of an event's `data:` line, stripped (None for comments). An event
    of several `data:` lines is their payloads joined by newlines, as the SSE spec (and
    the openai SDK) reads it: an error event split over lines is still an error."""
    start = event.find(b"data:")
    if start == -1:
        return None
    if event.find(b"\ndata:", start) == -1:  # one data line: the usual
        end = event.find(b"\n", start)
        return event[start + 5 : end if end != -1 else len(event)].strip()
    lines = event[start:].split(b"\n")
    return b"\n".join(line[5:].strip() for line in lines if line.startswith(b"data:"))


def is_done(event: bytes) -> bool:
    """Is this the `data: [DONE]` that ends a chat or completions stream?"""
    return DONE_PAYLOAD in event and data_of(event) == DONE_PAYLOAD


def json_of(event: bytes) -> Any:
    """The event's JSON payload, or None (no data line, [DONE], or not JSON)."""
    payload = data_of(event)
    if not payload or payload == DONE_PAYLOAD:
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        value = read_leniently(payload)
        return None if value is UNREADABLE else value


def read_leniently(payload: bytes) -> Any:
    """JSON orjson refused, as the SDK's reader (Python's `json`) takes it: a lone
    surrogate escape, NaN, Infinity, an integer past 64 bits; UNREADABLE when no reader
    takes it. A stream's last event holding one is still its end and its usage, and its
    texts are still scanned (probes p16, p20)."""
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return UNREADABLE


def events_of(chunk: bytes) -> Sequence[bytes]:
    """The events of a chunk of whole events, each with its blank line. One event (the
    usual upstream read) is the chunk itself: no copy, no list (stream steps call this
    for every read)."""
    if chunk.find(EVENT_END) == len(chunk) - 2:
        return (chunk,)
    events = []
    start = 0
    while (end := chunk.find(EVENT_END, start)) != -1:
        events.append(chunk[start : end + 2])
        start = end + 2
    if start < len(chunk):
        events.append(chunk[start:])
    return events


def from_first_data(chunk: bytes) -> bytes:
    """`chunk` (whole events) from its first event with data on: what comes before (a
    comment such as `: ping`, a keep-alive) is no event (the SSE spec dispatches none)."""
    if chunk.startswith(b"data:"):
        return chunk
    events = events_of(chunk)
    for at, event in enumerate(events):
        if event.startswith(b"data:") or b"\ndata:" in event:
            return b"".join(events[at:])
    return b""


def end_of_done(chunk: bytes) -> int | None:
    """Where the `data: [DONE]` event of a chunk of whole events ends, or None."""
    if DONE_PAYLOAD not in chunk:
        return None
    position = 0
    for event in events_of(chunk):
        position += len(event)
        if is_done(event):
            return position
    return None


class EventSplitter:
    """Cut a byte stream into chunks of whole events, each ending in a blank line.

    Every complete event a read brought comes out together, as one chunk (a read
    of three events is one chunk of three, not three chunks): the relay then
    writes them to the client at once. Line ends (CRLF, LF or a lone CR, the SSE
    spec's three) come out as LF. Each read is normalized before it joins the
    buffer; a read that ends in CR is remembered, so that a CRLF split across two
    reads is one line end, not two, and an event ended by CR CR leaves at once.
    """

    __slots__ = ("_after_cr", "_buffer")

    def __init__(self) -> None:
        self._buffer = b""
        self._after_cr = False

    def feed(self, chunk: bytes) -> bytes:
        """The complete events buffered so far (b"" when none is complete yet)."""
        if self._after_cr and chunk:  # the last read ended in CR: an LF now is its CRLF's
            self._after_cr = False
            if chunk[0] == LF:
                chunk = chunk[1:]
        if b"\r" in chunk:  # a memchr; the usual LF-only read goes no further here
            self._after_cr = chunk[-1] == CR
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + chunk if self._buffer else chunk
        end = buffer.rfind(EVENT_END)
        if end == -1:
            self._buffer = buffer
            return b""
        self._buffer = buffer[end + 2 :]
        return buffer[: end + 2]

    def tail(self) -> bytes | None:
        """At the end of the stream: an event the upstream ended without its blank line."""
        rest = self._buffer.rstrip(b"\r\n")
        self._buffer = b""
        return rest + b"\n\n" if rest.strip() else None


# How many events from a stream's end `ends_on_error` parses at most: once per stream.
ENDING_EVENTS = 8
ERROR_EVENT_LINES = (b"event: error\n", b"event:error\n")  # Responses' `error` event


def ends_on_error(chunks: Sequence[bytes]) -> bool:
    """Did a stream whose last chunks (whole events, oldest first) are `chunks` end on the
    upstream's error event? An error event is the SDK's own rule (REFERENCE.md, mid-stream
    errors: a data event whose JSON has a truthy `error`), or Responses' `error` event. It
    is the ending when only comments, a usage chunk or `[DONE]` follow it. Parses a few
    events from the end: call it once, when the stream is over, never per chunk."""
    if not any(b"error" in chunk for chunk in chunks):  # the usual ending: nothing to parse
        return False
    looked = 0
    for chunk in reversed(chunks):
        for event in reversed(events_of(chunk)):
            verdict = _ending_verdict(event)
            if verdict is not None:
                return verdict
            looked += 1
            if looked >= ENDING_EVENTS:
                return False
    return False


def end_of_failure(chunk: bytes) -> int | None:
    """Where the first event of a chunk of whole events that says the upstream failed ends,
    or None: an error event (the SDK's rule, as `ends_on_error` reads it: it raises there
    and reads no further) or a Responses `response.failed`. Parses only the events that
    spell `error`; the caller asks only of a chunk that may hold one (a bytes search)."""
    position = 0
    for event in events_of(chunk):
        position += len(event)
        if b"error" in event and _is_failure(event):
            return position
    return None


def is_error_event(parsed: Any, event: bytes) -> bool:
    """Is `event` (its JSON `parsed`) an error event: the SDK's truthy `error`, or a
    Responses `error` (by its type or its `event:` line)?"""
    if event.startswith(ERROR_EVENT_LINES):
        return True
    return isinstance(parsed, dict) and (bool(parsed.get("error")) or parsed.get("type") == "error")


def _is_failure(event: bytes) -> bool:
    parsed = json_of(event)
    is_failed = isinstance(parsed, dict) and parsed.get("type") == "response.failed"
    return is_failed or is_error_event(parsed, event)


def _ending_verdict(event: bytes) -> bool | None:
    """True: an error event; False: any other event; None: nothing that ends a stream
    (a comment, `[DONE]`, a usage chunk)."""
    if event.startswith(ERROR_EVENT_LINES):
        return True
    payload = data_of(event)
    if payload is None or payload == DONE_PAYLOAD:
        return None
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        parsed = read_leniently(payload)
    if not isinstance(parsed, dict):
        return False
    if parsed.get("error") or parsed.get("type") == "error":
        return True
    is_usage = parsed.get("choices") == [] and isinstance(parsed.get("usage"), dict)
    return None if is_usage else False
