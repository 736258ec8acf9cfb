"""The HTTP server under the app: uvicorn (httptools) with limits on what a client
may send before the app sees a request, and `gateway serve`'s run loop.

Owns three things the app cannot do itself, because they happen before a request
exists or after the app has stopped:

- request heads: the request line, one header line, the whole head and the
  number of headers are bounded (431, connection closed) while they arrive,
  so an oversized head costs neither memory nor parser time;
- slow clients: a request's head and body must arrive within
  `client_timeout_s` of its first byte (of the connection, for the first one);
  a client that is slower is answered 408 when nothing has been answered yet,
  else disconnected, and logged as one JSON line with the running count;
- the drain: on SIGTERM the listener stays open while requests under way finish
  (up to `drain_grace_s`, then the inference requests still running are cut: each
  ends itself with a 503 error); meanwhile /readyz and new inference requests
  answer 503 (gateway/drain.py holds the state and the rule);
- the listeners: the teams' port, and the admin plane's own port when
  `--admin-port` is set (gateway/api/planes.py decides which serves what), bound by
  `serve` before it writes anything (`bind_listeners`);
- the exit status: after SIGTERM and a completed drain the process exits 0
  (uvicorn re-raises the signal, which would make it 143);
- SIGHUP under `--workers`: passed on to each worker, which reopens its access log
  (gateway/app.py), where uvicorn's supervisor would restart them all.

Limits travel in the uvicorn `Config` (pickled into each worker under
`--workers`), never in a module global.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
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
from uvicorn.supervisors import multiprocess
from uvicorn.supervisors.multiprocess import Multiprocess

from gateway.context import new_request_id
from gateway.drain import DRAIN_STATE_KEY, Drain, drain_is_over
from gateway.response_head import GatewayCycle
from gateway.settings import (
    DEFAULT_CLIENT_TIMEOUT_S,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADER_LINE_BYTES,
    DEFAULT_MAX_HEADERS,
    Settings,
    SettingsError,
)
from gateway.telemetry.multiproc import shared_metrics_dir

log = logging.getLogger("gateway.server")

APP = "gateway.app:app_from_env"
# uvicorn's own shutdown deadline, after the drain (gateway/drain.py) has ended: the
# requests still running then were given their grace already, or arrived during the
# drain and were answered 503 at once.
GRACEFUL_SHUTDOWN_S = 2
STARTUP_FAILURE = 3  # uvicorn's own exit status when the app cannot start


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


class GatewayServerConfig(uvicorn.Config):
    """uvicorn's Config carrying the edge limits to every connection of every worker, and
    the drain grace to every worker's server."""

    def __init__(
        self, app: str, *, edge_limits: EdgeLimits, drain_grace_s: float, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.edge_limits = edge_limits
        self.edge_counters = EdgeCounters()
        self.drain_grace_s = drain_grace_s


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
        cycle = self.cycle if not self._in_head else None
        phase = "body" if cycle is not None and not cycle.response_complete else "headers"
        self._counters.slow_clients += 1
        request_id = new_request_id()
        log.warning(
            "client too slow: dropped",
            extra={
                "fields": {
                    "event": "client_timeout",
                    "phase": phase,
                    "client": self.client[0] if self.client else None,
                    "timeout_s": self._limits.client_timeout_s,
                    "slow_clients_total": self._counters.slow_clients,
                    "request_id": request_id,
                }
            },
        )
        if cycle is not None and not cycle.response_complete:
            answered = cycle.response_started
            # The app still reading the body sees a disconnect (its 499), and
            # anything it sends later goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
            if not answered:
                self.transport.write(ANSWER_408.render(request_id))
        else:
            self.transport.write(ANSWER_408.render(request_id))
        self.transport.close()

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
        log.warning(
            "client too slow reading its answer: dropped",
            extra={
                "fields": {
                    "event": "client_timeout",
                    "phase": "answer",
                    "client": self.client[0] if self.client else None,
                    "timeout_s": self._limits.client_timeout_s,
                    "buffered_bytes": buffered,
                    "slow_clients_total": self._counters.slow_clients,
                }
            },
        )
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's next send goes nowhere (a stream ends)
            cycle.message_event.set()
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
        self._disarm()
        self.transport.write(ANSWER_400.render(request_id))
        self.transport.close()

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
        cycle = self.cycle
        answered = cycle is not None and cycle.response_started
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if answered:
            self._disarm()
            self.transport.close()
            return
        self._refuse_head("chunk lines or trailer")

    def _refuse_head(self, which: str) -> None:
        self._counters.heads_too_large += 1
        request_id = new_request_id()
        log.warning(
            "request head too large: refused",
            extra={
                "fields": {
                    "event": "head_too_large",
                    "limit": which,
                    "client": self.client[0] if self.client else None,
                    "heads_too_large_total": self._counters.heads_too_large,
                    "request_id": request_id,
                }
            },
        )
        self._disarm()
        self.transport.write(ANSWER_431.render(request_id))
        self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn's Server with the drain before its shutdown, noting whether the shutdown
    let every request finish (`drained`)."""

    drained = False
    cut_requests = 0  # inference requests the drain's grace cut (ended by their own error)

    def __init__(self, config: GatewayServerConfig, drain_grace_s: float) -> None:
        super().__init__(config)
        self.drain = Drain()
        self._drain_grace_s = drain_grace_s
        self._drain_logged = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # Every request's scope["state"] is a copy of the lifespan state: the edges find
        # the drain there (a reference, so they see it begin).
        self.lifespan.state[DRAIN_STATE_KEY] = self.drain
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first SIGTERM or SIGINT once serving begins the drain; another one (or one
        during start-up) is uvicorn's: shut down now, with its short deadline."""
        is_stop = sig in (signal.SIGTERM, signal.SIGINT)
        if self.started and is_stop and self.drain.begin(time.monotonic()):
            self._captured_signals.append(sig)  # re-raised at the end, as uvicorn does
            return  # logged by the next tick: no logging inside a signal handler
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        began_at = self.drain.began_at
        if began_at is None:
            return False
        if not self._drain_logged:
            self._drain_logged = True
            log.info(
                "draining: requests under way may finish, new ones get 503",
                extra={
                    "fields": {
                        "event": "drain_started",
                        "requests": len(self.server_state.tasks),
                        "grace_s": self._drain_grace_s,
                    }
                },
            )
        now = time.monotonic()
        busy = len(self.server_state.tasks)
        if not drain_is_over(now - began_at, busy, self._drain_grace_s):
            return False
        if busy:
            self._cut_under_way(now)
        return True

    def _cut_under_way(self, now: float) -> None:
        """The grace is spent: each inference request still under way is cancelled and
        ends itself as a shutdown cut (a stream: an error event, then its end), within
        uvicorn's shutdown deadline, rather than by that deadline's cancel, which closes
        the connection without a word and logs the request as an ASGI failure."""
        cut = self.drain.cut(now)
        for task in cut:
            task.cancel()
        self.cut_requests += len(cut)
        log.warning(
            "drain grace spent: requests still under way are cut",
            extra={
                "fields": {
                    "event": "drain_cut",
                    "requests": len(cut),
                    "grace_s": self._drain_grace_s,
                }
            },
        )

    async def _wait_tasks_to_complete(self) -> None:
        try:
            await super()._wait_tasks_to_complete()
        except asyncio.CancelledError:
            # uvicorn's shutdown deadline (reached when a second signal skipped the
            # drain's own cut): it cancels the requests still running next. Marked cut
            # first, each ends itself as a drain's cut does (charged, a 503 or its
            # stream's error event, recorded, its limits settled) while the lifespan
            # waits for it (services.DRAIN_S), instead of dropping its connection.
            self.drain.cut(time.monotonic())
            raise
        # Reached only when the graceful-shutdown deadline did not cut it short.
        self.drained = True


class _DrainingWorker(multiprocess.Process):
    """A `--workers` worker serving with our `_Server`: the SIGTERM its supervisor passes
    on begins the drain, as it does for a single process (uvicorn's own worker would
    stop at once and cut the streams under way)."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        # SIGHUP's default ends the process: ignored until the app takes it to reopen the
        # access log, so a logrotate during start-up or shutdown cannot kill a worker.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        super().target(sockets)

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            config = self.config
            assert isinstance(config, GatewayServerConfig)
            self._server = _Server(config, config.drain_grace_s)
        return self._server


class _Supervisor(Multiprocess):
    """uvicorn's `--workers` supervisor, but SIGHUP (logrotate's postrotate) is passed on
    to each worker, which reopens its access log as a single process does. uvicorn's own
    answer, restarting every worker, would cut requests under way (503) and answer
    /readyz 503 meanwhile."""

    def handle_hup(self) -> None:
        for process in self.processes:
            if process.pid is None or process.exitcode is not None:
                continue  # not started, or dead: keep_subprocess_alive replaces it
            try:
                os.kill(process.pid, signal.SIGHUP)
            except ProcessLookupError:
                continue  # it died just now


@contextmanager
def _draining_workers() -> Iterator[None]:
    """uvicorn's supervisor makes its workers from the module's `Process` (no hook for
    another class): ours while it runs. The workers are spawned: they unpickle a
    `_DrainingWorker` by its own module, so only this (the parent) process is patched."""
    original = multiprocess.Process
    setattr(multiprocess, "Process", _DrainingWorker)  # noqa: B010 - a type assignment mypy refuses
    try:
        yield
    finally:
        setattr(multiprocess, "Process", original)  # noqa: B010


def server_config(settings: Settings) -> GatewayServerConfig:
    return GatewayServerConfig(
        APP,
        edge_limits=EdgeLimits.from_settings(settings),
        drain_grace_s=float(settings.drain_grace_s),
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http=GatewayHttpProtocol,
        ws="none",  # no WebSocket route: a handshake is an HTTP request like any other
        # X-Forwarded-For only from proxies the operator names: uvicorn's default trusts
        # it from 127.0.0.1, so a local peer could pick its address (and so escape the
        # token endpoint's per-address limits, or lock another address out).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def run_server(settings: Settings, sockets: list[socket.socket]) -> int:
    """Serve on `sockets` (bind_listeners') until told to stop; the process exit status.

    0 after SIGTERM (or SIGINT) when every request finished within the graceful
    deadline (uvicorn would re-raise the signal: 143); 143 (130 after SIGINT) when the
    drain's grace or the deadline cut requests.
    Under `--workers` each worker drains the same way when the supervisor passes the
    SIGTERM on, and the supervisor exits 0 once they have stopped.
    """
    config = server_config(settings)
    host, port = sockets[0].getsockname()[:2]
    # uvicorn's own line, which its bind_socket would have written.
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on %s (Press CTRL+C to quit)", _url(host, port)
    )
    if config.workers > 1:
        with shared_metrics_dir(), _draining_workers():  # one scrape counts every worker
            _Supervisor(config, sockets=sockets).run()
        return 0
    server = _Server(config, config.drain_grace_s)
    terminated: list[int] = []

    def _after_drain(sig: int, _frame: FrameType | None) -> None:
        terminated.append(sig)  # uvicorn restores this handler and re-raises into it

    stops = (signal.SIGTERM, signal.SIGINT)  # both begin the drain (`handle_exit`)
    previous = {sig: signal.signal(sig, _after_drain) for sig in stops}
    try:
        server.run(sockets=sockets)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        return STARTUP_FAILURE
    if terminated and (not server.drained or server.cut_requests):
        return 128 + terminated[0]
    return 0


def bind_listeners(settings: Settings) -> list[socket.socket]:
    """The teams' listener, then the admin plane's (`--admin-port`): bound, not yet
    listening, so `serve` knows it can serve before it writes anything (the database,
    the issuer it serves as). SettingsError naming the setting when one cannot be bound:
    a name that does not resolve, an address not on this host, a port in use."""
    sockets = [_bind(settings.host, settings.port, "GATEWAY_PORT (--port)")]
    if settings.admin_port is not None:
        try:
            sockets.append(
                _bind(settings.host, settings.admin_port, "GATEWAY_ADMIN_PORT (--admin-port)")
            )
        except SettingsError:
            sockets[0].close()
            raise
    return sockets


def local_url(sock: socket.socket) -> str:
    """Where a client on this host reaches a bound listener: a wildcard address as the
    loopback one (`gateway usage` asks the server there)."""
    host, port = sock.getsockname()[:2]
    loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}
    return _url(loopback.get(host, host), port)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bind(host: str, port: int, port_setting: str) -> socket.socket:
    """A socket bound as uvicorn's `Config.bind_socket` binds one (SO_REUSEADDR,
    inheritable by `--workers`), with a refusal that names the setting to fix."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))  # a name is resolved here (getaddrinfo)
    except OSError as error:
        sock.close()
        raise SettingsError(_bind_problem(host, port, port_setting, error)) from None
    sock.set_inheritable(True)
    return sock


def _bind_problem(host: str, port: int, port_setting: str, error: OSError) -> str:
    """Why `host`:`port` cannot be listened on, naming the setting that says so."""
    reason = error.strerror or str(error)
    if isinstance(error, socket.gaierror):
        return f"GATEWAY_HOST (--host): cannot resolve {host!r} to an address ({reason})"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"GATEWAY_HOST (--host): {host} is not an address of this host ({reason})"
    if error.errno == errno.EADDRINUSE:
        return f"{port_setting}: port {port} on {host} is in use ({reason})"
    if error.errno == errno.EACCES:
        return f"{port_setting}: no permission to listen on port {port} ({reason})"
    return f"GATEWAY_HOST (--host), {port_setting}: cannot listen on {host}:{port} ({reason})"
