"""The edge: what a client may send before the app sees a request, and how long it may
take (uvicorn's httptools protocol, bounded; gateway/server.py runs it).

- request heads: the request line, one header line, the whole head and the number of
  headers are bounded (431, connection closed) while they arrive, so an oversized head
  costs neither memory nor parser time; chunk-size lines, extensions and trailers are
  bounded alike, and a trailer is never a header;
- slow clients: a request's head and body must arrive within `client_timeout_s` of its
  first byte (of the connection, for the first one), and an answer the client stops
  reading must move within it too; a client that is slower is answered 408 when nothing
  has been answered yet, else disconnected, and logged as one JSON line with the
  running count;
- `Upgrade`: ignored (the gateway upgrades to nothing), refused where it cannot be.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from gateway.context import new_request_id
from gateway.response_head import GatewayCycle
from gateway.settings import (
    DEFAULT_CLIENT_TIMEOUT_S,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADER_LINE_BYTES,
    DEFAULT_MAX_HEADERS,
    Settings,
)

log = logging.getLogger("gateway.edge")


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """What a client may send before its request reaches the app (defaults: the settings')."""

    max_line_bytes: int = DEFAULT_MAX_HEADER_LINE_BYTES  # the request target, or one header
    max_head_bytes: int = DEFAULT_MAX_HEADER_BYTES  # request target and every header together
    max_headers: int = DEFAULT_MAX_HEADERS
    client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S  # head and body, from its first byte

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        return cls(
            max_line_bytes=settings.max_header_line_bytes,
            max_head_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            client_timeout_s=float(settings.client_timeout_s),
        )


@dataclass(slots=True)
class EdgeCounters:
    """Per-process counts of clients refused at the edge (written to their log lines)."""

    heads_too_large: int = 0
    slow_clients: int = 0


class HeadTooLarge(Exception):
    """Raised from a parser callback; the message says which limit, for the log."""


class UpgradeNotIgnored(Exception):
    """Raised from a parser callback: a request whose `Upgrade` the rewrite missed (the
    header not in a read that begins a request head). httptools would stop reading at
    its head, and its body would be read as the next request (probe p13: request
    smuggling), so it is refused and the connection closed."""


@dataclass(frozen=True, slots=True)
class EdgeAnswer:
    """An error answered before the app sees the request: OpenAI's body, and like every
    answer an `x-request-id` (a new one each time: no request exists to have one)."""

    before_id: bytes  # the status line and the headers up to the id's value
    after_id: bytes  # the rest of the head, and the body

    @classmethod
    def of(cls, status: int, code: str, message: str) -> EdgeAnswer:
        body = orjson.dumps(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": code,
                }
            }
        )
        return cls(
            STATUS_LINE[status] + b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n"
            b"x-request-id: ",
            b"\r\n\r\n" + body,
        )

    def render(self, request_id: str) -> bytes:
        return self.before_id + request_id.encode() + self.after_id


ANSWER_431 = EdgeAnswer.of(
    431, "request_header_fields_too_large", "The request line or headers are too large."
)
ANSWER_400 = EdgeAnswer.of(
    400, "invalid_http_request", "The request is not valid HTTP/1.1 (its framing or head)."
)
ANSWER_408 = EdgeAnswer.of(
    408, "request_timeout", "The request was not received in time; send it faster or retry."
)


# The gateway upgrades to nothing (no WebSocket, no h2c): RFC 9110 §7.8 says a server
# that does not upgrade ignores the header. httptools cannot: a request with `Upgrade`
# and `Connection: upgrade` is ended at its head (its body dropped: `curl --http2` to an
# http:// URL got "The request body is empty"). So the header is renamed before the
# parser reads it, in a read that begins a request head. One that escapes this (its
# name split across two reads, or a head after another request's body in one read) is
# refused with a 400 and the connection closed (`UpgradeNotIgnored`); `ws="none"` keeps
# it from reaching the app as a WebSocket.
_UPGRADE_HEADER = re.compile(rb"\r\nupgrade:", re.IGNORECASE)  # "upgrade :" is a 400 anyway


def without_upgrade(data: bytes) -> bytes:
    """The head in `data` (all of it, or up to its blank line) with any `Upgrade:` header
    renamed `X-Ignored-Upgrade:`; the body after it untouched. Two finds per read that
    may hold a head: the regex runs only when the name may be there."""
    if data.find(b"pgrade") == -1 and data.find(b"PGRADE") == -1:
        return data
    end = data.find(b"\r\n\r\n")
    if end == -1:
        return _UPGRADE_HEADER.sub(b"\r\nX-Ignored-Upgrade:", data)
    head = _UPGRADE_HEADER.sub(b"\r\nX-Ignored-Upgrade:", data[: end + 2])
    return head + data[end + 2 :]


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads and a client deadline.

    The head is counted in the parser callbacks (exact) and, while a head is
    still arriving, by the bytes received (httptools joins a header's pieces
    in memory before it calls `on_header`, so a single endless header is only
    visible that way). Cost: a few integer additions per callback.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits: EdgeLimits = getattr(config, "edge_limits", EdgeLimits())
        self._counters: EdgeCounters = getattr(config, "edge_counters", EdgeCounters())
        self._in_head = False
        self._head_pending = True  # the next read may hold (part of) a request head
        self._head_bytes = 0  # bytes received while a head is arriving
        self._counted_bytes = 0  # target and headers as parsed
        self._header_count = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._body_moved = False  # a read fed the body (or ended the message)
        self._tail_bytes = 0  # bytes read in a row, after the head, that fed no body
        self._write_deadline: asyncio.TimerHandle | None = None
        self._write_buffered = 0  # the write buffer's size when its deadline was armed

    # --- the client deadline ---

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows BaseTransport
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is a slow client too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_write_deadline()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(
                self._limits.client_timeout_s, self._on_client_timeout
            )

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_client_timeout(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        in_body = not self._in_head and cycle is not None and not cycle.response_complete
        self._counters.slow_clients += 1
        request_id = new_request_id()
        self._log_dropped(
            "client too slow: dropped",
            "client_timeout",
            phase="body" if in_body else "headers",
            timeout_s=self._limits.client_timeout_s,
            slow_clients_total=self._counters.slow_clients,
            request_id=request_id,
        )
        # The app still reading the body sees a disconnect (its 499).
        self._close_with(ANSWER_408, request_id, cut_app=in_body)

    # --- ending a connection at the edge ---

    def _cut_app(self) -> bool:
        """The request under way, if any, sees its client gone (anything its app sends
        later goes nowhere): True when its answer has begun, so no other can be sent."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return False
        cycle.disconnected = True
        cycle.message_event.set()
        return cycle.response_started

    def _close_with(self, answer: EdgeAnswer, request_id: str, *, cut_app: bool = False) -> None:
        """Close the connection, answering `answer` unless the app under way (cut when
        `cut_app`) has begun its own."""
        self._disarm()
        if not (cut_app and self._cut_app()):
            self.transport.write(answer.render(request_id))
        self.transport.close()

    def _log_dropped(self, message: str, event: str, **fields: object) -> None:
        client = self.client[0] if self.client else None
        log.warning(message, extra={"fields": {"event": event, "client": client, **fields}})

    # --- request heads ---

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._counted_bytes = self._header_count = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._counted_bytes += len(url)
        if self._counted_bytes > self._limits.max_line_bytes:
            raise HeadTooLarge("request line")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        line = len(name) + len(value)
        self._counted_bytes += line + 4  # ": " and CRLF
        if self._header_count > self._limits.max_headers:
            raise HeadTooLarge("header count")
        if line > self._limits.max_line_bytes:
            raise HeadTooLarge("header line")
        if self._counted_bytes > self._limits.max_head_bytes:
            raise HeadTooLarge("headers in all")
        if not self._in_head:
            # A chunked body's trailer: counted with the head, never a header the app
            # reads (RFC 9110 §6.5: no merging; a token or X-Forwarded-For in a trailer
            # passed for one, probe p13).
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.parser.should_upgrade():
            raise UpgradeNotIgnored
        self._in_head = self._head_pending = False
        self._body_moved, self._tail_bytes = True, 0
        super().on_headers_complete()
        cycle = self.cycle
        if type(cycle) is RequestResponseCycle:  # the one uvicorn just made (its app not run yet)
            cycle.__class__ = GatewayCycle  # the same object, writing its head faster

    def on_body(self, body: bytes) -> None:
        self._body_moved = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()  # the whole request is in; the app's time is not the client's
        self._head_pending = self._body_moved = True
        super().on_message_complete()

    # --- a client that does not read its answer ---

    def pause_writing(self) -> None:
        """The answer's bytes wait for the client (past the write buffer's high mark):
        it must read them within the client deadline, or the connection is dropped, so
        a whole answer it never reads is not held in memory for ever (probe p13)."""
        super().pause_writing()
        self._arm_write_deadline()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._disarm_write_deadline()

    def _arm_write_deadline(self) -> None:
        if self._write_deadline is None:
            self._write_buffered = self.transport.get_write_buffer_size()
            self._write_deadline = self.loop.call_later(
                self._limits.client_timeout_s, self._on_write_timeout
            )

    def _disarm_write_deadline(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _on_write_timeout(self) -> None:
        """A client still reading (the buffer shrank since the deadline was armed) gets
        another period; one that read nothing is dropped, its buffered answer freed."""
        self._write_deadline = None  # a closing transport too: it waits for the buffer
        buffered = self.transport.get_write_buffer_size()
        if buffered < self._write_buffered:
            self._arm_write_deadline()
            return
        self._counters.slow_clients += 1
        self._log_dropped(
            "client too slow reading its answer: dropped",
            "client_timeout",
            phase="answer",
            timeout_s=self._limits.client_timeout_s,
            buffered_bytes=buffered,
            slow_clients_total=self._counters.slow_clients,
        )
        self._cut_app()  # the app's next send goes nowhere (a stream ends)
        self.transport.abort()  # the buffer goes with it

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the head limits: 431 instead of 400 when one is exceeded."""
        self._unset_keepalive_if_required()
        if self._head_pending:
            data = without_upgrade(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            if isinstance(error.__context__, HeadTooLarge):
                self._refuse_head(str(error.__context__))
            elif isinstance(error.__context__, UpgradeNotIgnored):
                self._refuse_upgrade()
            else:
                self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head:
            # Every byte of this read may be head: an upper bound, exact without pipelining.
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_head_bytes + self._limits.max_line_bytes:
                self._refuse_head("head still arriving")
        elif not self._head_pending:
            # A body arriving. Reads that feed it nothing carry chunk sizes, chunk
            # extensions or trailer fields, which httptools joins in memory (quadratic
            # CPU for an endless one, probe p13): bounded like a head.
            if self._body_moved:
                self._body_moved, self._tail_bytes = False, 0
            else:
                self._tail_bytes += len(data)
                if self._tail_bytes > self._limits.max_head_bytes + self._limits.max_line_bytes:
                    self._refuse_tail()

    def _bad_request(self) -> None:
        """uvicorn's answer to unparsable HTTP, in OpenAI's error shape like every other."""
        request_id = new_request_id()
        self.logger.warning(
            "Invalid HTTP request received.",
            extra={"fields": {"event": "invalid_http_request", "request_id": request_id}},
        )
        self._close_with(ANSWER_400, request_id)

    def _refuse_upgrade(self) -> None:
        """Nothing more is read from the connection: a request before it still being
        answered (pipelined) gets its answer, then the connection closes; else a 400."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self._bad_request()
            return
        self.logger.warning(
            "Invalid HTTP request received.",
            extra={"fields": {"event": "invalid_http_request", "reason": "upgrade mid-read"}},
        )
        cycle.keep_alive = False  # uvicorn closes the connection once it is answered
        self.flow.pause_reading()

    def _refuse_tail(self) -> None:
        """`_refuse_head` for chunk-size lines, extensions and trailers past the head's
        bounds, the request's app already running: it sees a disconnect."""
        self._refuse_head("chunk lines or trailer", cut_app=True)

    def _refuse_head(self, which: str, *, cut_app: bool = False) -> None:
        self._counters.heads_too_large += 1
        request_id = new_request_id()
        self._log_dropped(
            "request head too large: refused",
            "head_too_large",
            limit=which,
            heads_too_large_total=self._counters.heads_too_large,
            request_id=request_id,
        )
        self._close_with(ANSWER_431, request_id, cut_app=cut_app)
