"""A response's status line and headers written in a few C calls.

uvicorn's httptools cycle checks and writes each header in a Python loop: two regex
searches (which scan byte by byte in the regex engine), a lower-casing and a list
extended, ~0.6 µs a header; an inference answer has 10 to 16 (a limited team's six
x-ratelimit-* among them). `fast_head` does the same checks on all the names at once
and all the values at once, and joins the lines in one call (bench/RESULTS.md,
session 30). Anything it does not handle exactly as uvicorn would (a header uvicorn
acts on besides content-length, a name with a capital or any character outside
`[a-z0-9-]`, a value with a control character, a malformed item) makes it answer
None: uvicorn's own loop writes that head, and refuses what it refuses.

`GatewayCycle` is uvicorn's request/response cycle with that head; the server's
protocol (server.py) gives each new cycle this class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator, Sequence
from typing import Any, NamedTuple

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

# What every name here is made of: lower case (uvicorn lower-cases names; these need
# none), and none of uvicorn's HEADER_RE characters; and "\n", which separates the joined
# names (counted: a name holding one is not one of these).
_NAME_BYTES = b"abcdefghijklmnopqrstuvwxyz0123456789-\n"
# uvicorn's HEADER_VALUE_RE: every control character but tab. "\t" separates the values.
_VALUE_CONTROLS = bytes(range(0x00, 0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
_NO_BODY_STATUSES = (204, 304)


class Head(NamedTuple):
    """The bytes to write, and what the body's framing becomes."""

    data: bytes
    content_length: int | None  # the first content-length header's, None without one
    chunked: bool | None  # uvicorn's `chunked_encoding` after the head


def fast_head(status: int, headers: Sequence[Any], *, keep_alive: bool, method: str) -> Head | None:
    """The head uvicorn's cycle would write for `status` and `headers` (its default
    headers first), byte for byte; None where its own loop must write it."""
    line = STATUS_LINE.get(status)
    if line is None or not headers:
        return None
    try:
        names, values = zip(*headers, strict=False)
        joined_names = b"\n".join(names)
        joined_values = b"\t".join(values)
        lines = b"\r\n".join(map(b": ".join, headers))
    except (TypeError, ValueError):  # not pairs of bytes
        return None
    count = len(headers)
    # Each item a pair: a longer one adds text the joins of names and values lack.
    if len(lines) != len(joined_names) + len(joined_values) + 2 * count:
        return None
    if joined_names.translate(None, _NAME_BYTES) or joined_names.count(b"\n") != count - 1:
        return None
    if len(joined_values.translate(None, _VALUE_CONTROLS)) != len(joined_values):
        return None
    names_line = b"\n" + joined_names + b"\n"
    if b"\ntransfer-encoding\n" in names_line or b"\nconnection\n" in names_line:
        return None
    content_length: int | None = None
    chunked: bool | None = None
    if b"\ncontent-length\n" in names_line:
        try:
            content_length = int(values[names.index(b"content-length")].decode())
        except ValueError:
            return None
        chunked = False
    tail = b"\r\n"
    if not keep_alive:
        tail += b"connection: close\r\n"
    if chunked is None and method != "HEAD" and status not in _NO_BODY_STATUSES:
        chunked = True
        tail += b"transfer-encoding: chunked\r\n"
    return Head(line + lines + tail + b"\r\n", content_length, chunked)


class _Sent:
    """What `GatewayCycle.send` returns once the head is written: awaited, done."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, Any, None]:
        yield from ()


_SENT = _Sent()
_uvicorn_send = RequestResponseCycle.send


class GatewayCycle(RequestResponseCycle):
    """uvicorn's cycle, writing the usual response head with `fast_head`.

    `send` is a plain function returning what the app awaits: uvicorn's own coroutine
    for every message but the head (a stream's events cost one call more, not one
    coroutine more), or, once the head is written here, an awaitable already done."""

    def send(self, message: Any) -> Awaitable[None]:  # type: ignore[override]  # awaited alike
        if (
            self.response_started
            or self.disconnected
            or self.flow.write_paused
            or self.access_log
            or message["type"] != "http.response.start"
        ):
            return _uvicorn_send(self, message)
        headers = self.default_headers + list(message.get("headers", []))
        head = fast_head(
            message["status"], headers, keep_alive=self.keep_alive, method=self.scope["method"]
        )
        if head is None:
            return _uvicorn_send(self, message)
        self.response_started = True
        self.waiting_for_100_continue = False
        if head.content_length is not None:
            self.expected_content_length = head.content_length
        self.chunked_encoding = head.chunked
        self.transport.write(head.data)
        return _SENT
