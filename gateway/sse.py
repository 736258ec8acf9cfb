"""Server-sent events as OpenAI-style upstreams write them: one `data:` line per event.

Small byte-level helpers shared by the providers that split a stream into
events and the relay that reads them. The SSE grammar allows `data:` with or
without a space, CRLF or LF line ends, and comment lines (`: ping`).
"""

from __future__ import annotations

from typing import Any

import orjson

DONE_PAYLOAD = b"[DONE]"


def data_of(event: bytes) -> bytes | None:
    """The payload of an event's `data:` line, stripped (None for comments)."""
    start = event.find(b"data:")
    if start == -1:
        return None
    end = event.find(b"\n", start)
    return event[start + 5 : end if end != -1 else len(event)].strip()


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
        return None


class EventSplitter:
    """Cut a byte stream into events, each ending in a blank line (`\\n\\n`).

    Line ends are normalized on the buffer, not per read, so a CRLF split
    across two network reads is still one line end.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk
        if b"\r\n" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        events = []
        while (end := buffer.find(b"\n\n")) != -1:
            events.append(buffer[: end + 2])
            buffer = buffer[end + 2 :]
        self._buffer = buffer
        return events

    def tail(self) -> bytes | None:
        """At the end of the stream: an event the upstream ended without its blank line."""
        rest = self._buffer.rstrip(b"\r\n")
        self._buffer = b""
        return rest + b"\n\n" if rest.strip() else None
