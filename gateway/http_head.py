"""The HTTP response head, written cheaply: uvicorn's httptools `send` of
`http.response.start`, with the same bytes on the wire and the same cycle state, for
about two thirds of its CPU (bench/head_micro.py: ~6 us -> ~4 us a gateway answer).

uvicorn checks each header with two regex searches, lowercases its name and compares
it with three names: ~0.4 us a header, and a gateway answer has ~14. Here the names
are checked in one C pass over all of them, the values in another, and the head is
built with the same few operations however many headers there are.

Owns `build_head` (pure: bytes in, bytes and state out) and `GatewayCycle`, uvicorn's
`RequestResponseCycle` with that `send` for the response start; every other message
is uvicorn's own. Must not change what a client or the app can observe: anything
unusual (a name in capitals, a `connection` or `transfer-encoding` header, a byte
uvicorn refuses, a header that is not a pair of bytes) takes uvicorn's header-by-header
rules, and a start that fails is handed to uvicorn's own `send`, which fails it the
same way (its error, its access log line, the state it leaves).

Mirrors uvicorn >= 0.53 (pyproject's floor): `connection` read as a token list,
`connection: close` added when keep-alive ends. tests/unit/test_http_head.py compares
both with uvicorn's real `send`, so an upgrade that changes it fails there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from uvicorn._types import ASGISendEvent, HTTPResponseStartEvent
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

Header = tuple[bytes, bytes]

# uvicorn's two regexes are single-character classes: a name (value) is refused when
# it holds any of these bytes. Read off the regexes themselves, so a change to them
# in uvicorn carries over. As deletion tables, `translate` checks every name in one
# C pass: nothing deleted means nothing refused.
_REFUSED_IN_NAME = bytes(b for b in range(256) if HEADER_RE.search(bytes((b,))))
_REFUSED_IN_VALUE = bytes(b for b in range(256) if HEADER_VALUE_RE.search(bytes((b,))))
# The fast path also wants names already lowercase (Starlette's and uvicorn's are), so
# it can write them as given; a capital sends the head through uvicorn's rules.
_NOT_PLAIN_IN_NAME = _REFUSED_IN_NAME + bytes(range(ord("A"), ord("Z") + 1))
# Values are joined with a tab to be checked together: uvicorn allows tabs in values,
# and a byte it refuses cannot hide in a separator.
_VALUE_JOINER = b"\t"

# After the last header: (keep_alive, chunked added here) -> the end of the head.
_HEAD_ENDS = {
    (True, False): b"\r\n",
    (True, True): b"transfer-encoding: chunked\r\n\r\n",
    (False, False): b"connection: close\r\n\r\n",
    (False, True): b"connection: close\r\ntransfer-encoding: chunked\r\n\r\n",
}
_NO_BODY_STATUSES = (204, 304)
# The names whose values uvicorn reads (lowercase): a set lookup per name finds them.
_FRAMING_NAMES = frozenset((b"content-length", b"transfer-encoding", b"connection"))
_CLOSE_OR_CHUNKED_NAMES = frozenset((b"transfer-encoding", b"connection"))


class ResponseHead(NamedTuple):
    """The head's bytes and the cycle state uvicorn sets while writing it."""

    data: bytes
    expected_content_length: int
    chunked_encoding: bool | None
    keep_alive: bool


# A NamedTuple (immutable, named) built the way its generated __new__ builds it, minus
# that Python-level call: 0.05 us instead of 0.25 (a frozen dataclass: 0.5), on a path of
# ~3 us.
_new_head = tuple.__new__


def build_head(
    status: int,
    default_headers: Sequence[Header],
    headers: Iterable[Header],
    method: str,
    keep_alive: bool,
) -> ResponseHead:
    """The response head uvicorn's httptools `send` writes for `http.response.start`.

    `default_headers` come first (the server state's date and server), then the app's
    `headers`. The state is what a fresh cycle (no length or chunking decided yet) holds
    afterwards. Raises what uvicorn raises, in its order: RuntimeError for a refused
    name or value, ValueError for a content-length that is not a number, KeyError for an
    unknown status, TypeError for a header that is not bytes.

    The common head (lowercase names, nothing refused, no connection or
    transfer-encoding header) is built in a fixed number of steps; any other takes
    uvicorn's rules header by header.
    """
    status_line = STATUS_LINE[status]
    rows = [*default_headers, *headers]
    try:
        # Unpacking each row, as uvicorn's loop does, refuses rows that are not pairs.
        names = [name for name, _ in rows]
        values = [value for _, value in rows]
        names_joined = b"".join(names)
        values_joined = _VALUE_JOINER.join(values)
        has_framing = not _FRAMING_NAMES.isdisjoint(names)
    except (TypeError, ValueError):  # not pairs of bytes: uvicorn's loop says what is wrong
        return _build_head_stepwise(status_line, rows, status, method, keep_alive)
    if (
        len(names_joined.translate(None, _NOT_PLAIN_IN_NAME)) != len(names_joined)
        or len(values_joined.translate(None, _REFUSED_IN_VALUE)) != len(values_joined)
        or (has_framing and not _CLOSE_OR_CHUNKED_NAMES.isdisjoint(names))
    ):
        return _build_head_stepwise(status_line, rows, status, method, keep_alive)

    expected_content_length = 0
    chunked_encoding: bool | None = None
    if has_framing:  # content-length alone: the first one decides, as in uvicorn
        length = values[names.index(b"content-length")]
        expected_content_length = int(length.decode())  # uvicorn's error, if not a number
        chunked_encoding = False
    elif method != "HEAD" and status not in _NO_BODY_STATUSES:
        chunked_encoding = True

    # name, ": ", value, CRLF for every header: one list, filled by two slice assignments.
    lines = [b"", b": ", b"", b"\r\n"] * len(names)
    lines[::4] = names
    lines[2::4] = values
    data = status_line + b"".join(lines) + _HEAD_ENDS[keep_alive, chunked_encoding is True]
    return _new_head(ResponseHead, (data, expected_content_length, chunked_encoding, keep_alive))


def _build_head_stepwise(
    status_line: bytes,
    rows: list[Header],
    status: int,
    method: str,
    keep_alive: bool,
) -> ResponseHead:
    """uvicorn's rules header by header, for the heads the fast path leaves: the same
    result, and the same first error."""
    content = [status_line]
    expected_content_length = 0
    chunked_encoding: bool | None = None
    has_connection_close = False
    for raw_name, value in rows:
        if HEADER_RE.search(raw_name):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(value):
            raise RuntimeError("Invalid HTTP header value.")
        name = raw_name.lower()
        if name == b"content-length" and chunked_encoding is None:
            expected_content_length = int(value.decode())
            chunked_encoding = False
        elif name == b"transfer-encoding" and value.lower() == b"chunked":
            expected_content_length = 0
            chunked_encoding = True
        elif name == b"connection":
            tokens = [token.lower().strip() for token in value.split(b",")]
            if b"close" in tokens:
                keep_alive = False
                has_connection_close = True
        content += (name, b": ", value, b"\r\n")
    if not keep_alive and not has_connection_close:
        content.append(b"connection: close\r\n")
    if chunked_encoding is None and method != "HEAD" and status not in _NO_BODY_STATUSES:
        chunked_encoding = True
        content.append(b"transfer-encoding: chunked\r\n")
    content.append(b"\r\n")
    return ResponseHead(b"".join(content), expected_content_length, chunked_encoding, keep_alive)


class GatewayCycle(RequestResponseCycle):
    """uvicorn's httptools request/response cycle, writing the response head with
    `build_head`. The body, the 100-continue, the disconnect and the errors after the
    start are uvicorn's own."""

    async def send(self, message: ASGISendEvent) -> None:
        if self.response_started or message.get("type") != "http.response.start":
            await super().send(message)
            return
        start: HTTPResponseStartEvent = message  # type: ignore[assignment]  # its type, checked above
        headers = start.get("headers", ())
        if not isinstance(headers, (list, tuple)):
            await super().send(message)  # another iterable may be readable only once
            return
        keep_alive = self.keep_alive
        try:
            # Built before uvicorn's checks below: pure, so nothing has changed yet if it
            # fails, and uvicorn's send then fails the same way, from the start.
            data, expected_content_length, chunked_encoding, keep_alive_after = build_head(
                start["status"], self.default_headers, headers, self.scope["method"], keep_alive
            )
        except Exception:
            await super().send(message)
            return

        # uvicorn's checks, in its order.
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
            # While waiting, a shutdown may have ended keep-alive (or another task started
            # the response): uvicorn's send decides with the state as it is now.
            if self.response_started or self.keep_alive != keep_alive:
                await super().send(message)
                return
        if self.disconnected:
            return

        self.response_started = True
        self.waiting_for_100_continue = False
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(self.scope),
                self.scope["method"],
                get_path_with_query_string(self.scope),
                self.scope["http_version"],
                start["status"],
            )
        self.expected_content_length = expected_content_length
        self.chunked_encoding = chunked_encoding
        self.keep_alive = keep_alive_after
        self.transport.write(data)
