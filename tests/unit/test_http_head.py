"""The response head (gateway/http_head.py): for any header list, the bytes, the cycle
state, the access log line and the errors of uvicorn's real httptools `send`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from gateway.http_head import GatewayCycle, ResponseHead, build_head

DATE = (b"date", b"Tue, 01 Sep 2026 10:00:00 GMT")
SERVER = (b"server", b"uvicorn")
GATEWAY_JSON = [
    (b"content-type", b"application/json"),
    (b"x-request-id", b"req_1"),
    (b"x-gateway-deployment", b"openai/gpt-4o-mini"),
    (b"x-ratelimit-limit-requests", b"600"),
    (b"x-ratelimit-remaining-requests", b"599"),
    (b"x-ratelimit-reset-requests", b"100ms"),
    (b"x-gateway-cost-usd", b"0.000123"),
    (b"content-length", b"17"),
]
# The fields of a cycle that its `send` reads or writes.
STATE = (
    "response_started",
    "response_complete",
    "waiting_for_100_continue",
    "disconnected",
    "keep_alive",
    "chunked_encoding",
    "expected_content_length",
)


class RecordingTransport:
    """What a cycle wrote, and whether it closed the connection."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class OneShot(list):  # type: ignore[type-arg]
    """Headers to be sent as an iterator, readable once: each run gets its own."""


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def make_cycle(
    cls: type[RequestResponseCycle],
    *,
    method: str = "GET",
    keep_alive: bool = True,
    default_headers: Sequence[tuple[bytes, bytes]] = (DATE, SERVER),
    access_log: bool = False,
    expect_100_continue: bool = False,
) -> tuple[RequestResponseCycle, RecordingTransport, ListHandler]:
    transport = RecordingTransport()
    access_logger = logging.Logger("test.access")
    handler = ListHandler()
    access_logger.addHandler(handler)
    scope: Any = {
        "type": "http",
        "method": method,
        "http_version": "1.1",
        "client": ("10.0.0.7", 52100),
        "raw_path": b"/v1/chat/completions",
        "query_string": b"a=1",
    }
    cycle = cls(
        scope=scope,
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.Logger("test.error"),
        access_logger=access_logger,
        access_log=access_log,
        default_headers=list(default_headers),
        message_event=asyncio.Event(),
        expect_100_continue=expect_100_continue,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )
    return cycle, transport, handler


def drive(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a send that must not wait (writes are not paused)."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise AssertionError("the send waited")


def start(status: int, headers: Any) -> Any:
    return {"type": "http.response.start", "status": status, "headers": headers}


def error_of(call: Any) -> tuple[type[BaseException], str] | None:
    try:
        call()
    except Exception as error:
        return type(error), str(error)
    return None


def uvicorn_head(
    status: int,
    default_headers: Sequence[tuple[bytes, bytes]],
    headers: Any,
    method: str,
    keep_alive: bool,
) -> ResponseHead | tuple[type[BaseException], str]:
    """What uvicorn's own `send` writes and sets for this start, or the error it raises."""
    cycle, transport, _ = make_cycle(
        RequestResponseCycle, method=method, keep_alive=keep_alive, default_headers=default_headers
    )
    error = error_of(lambda: drive(cycle.send(start(status, headers))))
    if error is not None:
        return error
    return ResponseHead(
        b"".join(transport.writes),
        cycle.expected_content_length,
        cycle.chunked_encoding,
        cycle.keep_alive,
    )


# --- strategies: mostly heads the gateway sends, and every rule's corner ---

_names = st.one_of(
    st.sampled_from(
        [
            b"content-type",
            b"x-request-id",
            b"x-ratelimit-limit-requests",
            b"content-length",
            b"Content-Length",
            b"CONTENT-LENGTH",
            b"transfer-encoding",
            b"Transfer-Encoding",
            b"connection",
            b"Connection",
            b"X-Request-Id",
            b"x-connection-id",  # a framing name inside another name
            b"content-length-x",
            b"",
            b"date",
        ]
    ),
    st.text("abcxyzABC-_!#$%&'*+.^`|~019", min_size=1, max_size=12).map(str.encode),
    st.binary(max_size=6),  # mostly refused bytes: ()<>@,;:\"/[]?={} SP HT, controls, DEL
)
_values = st.one_of(
    st.sampled_from(
        [
            b"12",
            b"0",
            b" 7 ",
            b"+3",
            b"1_0",
            b"-1",
            b"abc",
            b"\xff",
            b"",
            b"chunked",
            b"Chunked",
            b"gzip, chunked",
            b"close",
            b"Close",
            b"keep-alive, close",
            b" CLOSE ,x",
            b"keep-alive",
            b"closed",
            b"a\tb",
            b"\t",
            b"x\r\ny: z",
            b"nul\x00",
            b"del\x7f",
            b"h\xc3\xa9",
        ]
    ),
    st.binary(max_size=10),
)
_rows = st.one_of(
    st.tuples(_names, _values),
    st.tuples(_names, _values).map(list),
)
# Heads like the gateway's (lowercase, nothing refused), framing headers among them.
_plain_rows = st.tuples(
    st.sampled_from(
        [
            b"content-type",
            b"x-request-id",
            b"content-length",
            b"transfer-encoding",
            b"connection",
            b"x-connection-id",
        ]
    ),
    st.sampled_from([b"12", b"0", b"7", b"abc", b"chunked", b"gzip", b"close", b"keep-alive"]),
)
# Rows that are not pairs of bytes: the first one that fails decides the error.
_odd_rows = st.sampled_from(
    [(b"a", b"b", b"c"), (b"a",), ("x-str", b"v"), (b"x", "v"), (b"x", 5), (None, b"v")]
)
_headers = st.one_of(
    st.lists(_plain_rows, max_size=8),
    st.lists(_rows, max_size=8),
    st.lists(st.one_of(_rows, _odd_rows), max_size=5),
    st.lists(_rows, max_size=8).map(tuple),
)
_default_headers = st.sampled_from(
    [[], [SERVER], [DATE, SERVER], [SERVER, (b"x-custom", b"Yes")], [(b"Server", b"gw")]]
)
_statuses = st.sampled_from([200, 204, 304, 404, 500, 101, 599, 600])
_methods = st.sampled_from(["GET", "POST", "HEAD"])


@settings(max_examples=1500)
@given(_statuses, _default_headers, _headers, _methods, st.booleans())
def test_build_head_is_uvicorns_head(status, default_headers, headers, method, keep_alive):
    """Any header list: uvicorn's bytes and state, or the error uvicorn raises."""
    expected = uvicorn_head(status, default_headers, headers, method, keep_alive)
    if isinstance(expected, ResponseHead):
        assert build_head(status, default_headers, headers, method, keep_alive) == expected
    else:
        got = error_of(lambda: build_head(status, default_headers, headers, method, keep_alive))
        assert got == expected


@pytest.mark.parametrize("byte", range(256))
def test_a_byte_is_refused_where_uvicorn_refuses_it(byte):
    """Each byte, alone and amid a name or value: refused exactly when uvicorn refuses it."""
    one = bytes((byte,))
    for headers in (
        [(one, b"v")],
        [(b"x-" + one + b"-y", b"v")],
        [(b"x", one)],
        [(b"x", b"a" + one + b"b")],
        [(b"content-length", b"3"), (b"x", one)],
    ):
        for method in ("GET", "HEAD"):
            expected = uvicorn_head(200, [SERVER], headers, method, True)
            got = error_of(lambda: build_head(200, [SERVER], headers, method, True))  # noqa: B023
            if got is None:
                got_head = build_head(200, [SERVER], headers, method, True)
                assert got_head == expected
            else:
                assert got == expected


@pytest.mark.parametrize(
    ("status", "headers", "method", "keep_alive", "head", "state"),
    [
        (
            200,
            GATEWAY_JSON,
            "POST",
            True,
            b"HTTP/1.1 200 OK\r\ndate: Tue, 01 Sep 2026 10:00:00 GMT\r\nserver: uvicorn\r\n"
            b"content-type: application/json\r\nx-request-id: req_1\r\n"
            b"x-gateway-deployment: openai/gpt-4o-mini\r\nx-ratelimit-limit-requests: 600\r\n"
            b"x-ratelimit-remaining-requests: 599\r\nx-ratelimit-reset-requests: 100ms\r\n"
            b"x-gateway-cost-usd: 0.000123\r\ncontent-length: 17\r\n\r\n",
            (17, False, True),
        ),
        (
            200,
            [(b"content-type", b"text/event-stream")],
            "POST",
            True,
            b"HTTP/1.1 200 OK\r\ndate: Tue, 01 Sep 2026 10:00:00 GMT\r\nserver: uvicorn\r\n"
            b"content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            (0, True, True),
        ),
        (
            200,
            [],
            "HEAD",
            False,
            b"HTTP/1.1 200 OK\r\ndate: Tue, 01 Sep 2026 10:00:00 GMT\r\nserver: uvicorn\r\n"
            b"connection: close\r\n\r\n",
            (0, None, False),
        ),
        (
            304,
            [(b"X-Cache", b"hit"), (b"Connection", b"keep-alive, Close")],
            "GET",
            True,
            b"HTTP/1.1 304 Not Modified\r\ndate: Tue, 01 Sep 2026 10:00:00 GMT\r\n"
            b"server: uvicorn\r\nx-cache: hit\r\nconnection: keep-alive, Close\r\n\r\n",
            (0, None, False),
        ),
        (
            500,
            [(b"content-length", b"5"), (b"Transfer-Encoding", b"chunked")],
            "GET",
            False,
            b"HTTP/1.1 500 Internal Server Error\r\ndate: Tue, 01 Sep 2026 10:00:00 GMT\r\n"
            b"server: uvicorn\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n"
            b"connection: close\r\n\r\n",
            (0, True, False),
        ),
    ],
    ids=[
        "gateway-json",
        "stream-chunked",
        "head-keepalive-off",
        "304-app-closes",
        "length-then-chunked",
    ],
)
def test_heads_as_a_client_reads_them(status, headers, method, keep_alive, head, state):
    """A gateway answer, a stream, HEAD, 304 with the app's `Connection: close`, and a
    length overridden by chunking: the exact head and state (as uvicorn writes them)."""
    built = build_head(status, [DATE, SERVER], headers, method, keep_alive)
    assert built == ResponseHead(head, *state)
    assert uvicorn_head(status, [DATE, SERVER], headers, method, keep_alive) == built


def test_refusals_carry_uvicorns_messages():
    """A refused name or value: uvicorn's RuntimeError, the first bad header deciding."""
    with pytest.raises(RuntimeError, match=r"^Invalid HTTP header name\.$"):
        build_head(200, [], [(b"x", b"ok"), (b"bad name", b"ok")], "GET", True)
    with pytest.raises(RuntimeError, match=r"^Invalid HTTP header value\.$"):
        build_head(200, [], [(b"x", b"a\r\nb"), (b"bad name", b"ok")], "GET", True)
    with pytest.raises(ValueError, match="invalid literal"):
        build_head(200, [], [(b"content-length", b"ten"), (b"bad name", b"ok")], "GET", True)


# --- the cycle: everything its send does, next to uvicorn's ---


@dataclass
class Observed:
    writes: list[bytes]
    closed: bool
    state: dict[str, Any]
    access_log: list[str]
    errors: list[tuple[type[BaseException], str] | None] = field(default_factory=list)


def observe(
    cls: type[RequestResponseCycle],
    messages: list[Any],
    *,
    method: str,
    keep_alive: bool,
    default_headers: Sequence[tuple[bytes, bytes]],
    access_log: bool,
    disconnected: bool,
    expect_100_continue: bool,
) -> Observed:
    cycle, transport, handler = make_cycle(
        cls,
        method=method,
        keep_alive=keep_alive,
        default_headers=default_headers,
        access_log=access_log,
        expect_100_continue=expect_100_continue,
    )
    cycle.disconnected = disconnected
    errors = [error_of(lambda m=m: drive(cycle.send(m))) for m in messages]
    state = {name: getattr(cycle, name) for name in STATE}
    return Observed(transport.writes, transport.closed, state, handler.lines, errors)


_bodies = st.sampled_from([b"", b"x" * 17, b"hello"])
_messages = st.one_of(
    # a start, then a whole body: the state the start set drives uvicorn's body path
    st.tuples(_statuses, _headers, _bodies).map(
        lambda t: [start(t[0], t[1]), {"type": "http.response.body", "body": t[2]}]
    ),
    # a start that streams: two chunks
    st.tuples(_statuses, _headers).map(
        lambda t: [
            start(t[0], t[1]),
            {"type": "http.response.body", "body": b"ab", "more_body": True},
            {"type": "http.response.body", "body": b"c"},
        ]
    ),
    # out of order: a body first, or two starts
    st.tuples(_statuses, _headers).map(
        lambda t: [{"type": "http.response.body", "body": b"x"}, start(t[0], t[1])]
    ),
    st.tuples(_statuses, _headers).map(lambda t: [start(t[0], t[1]), start(t[0], t[1])]),
    # headers as a one-shot iterable, or none at all
    st.tuples(_statuses, st.lists(_rows, max_size=4)).map(
        lambda t: [start(t[0], OneShot(t[1])), {"type": "http.response.body", "body": b""}]
    ),
    st.just([{"type": "http.response.start", "status": 200}]),
    st.just([{"type": "http.response.start", "headers": []}]),  # no status
)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=_messages,
    method=_methods,
    keep_alive=st.booleans(),
    default_headers=_default_headers,
    access_log=st.booleans(),
    disconnected=st.sampled_from([False] * 5 + [True]),
    expect_100_continue=st.booleans(),
)
def test_gateway_cycle_sends_as_uvicorn_does(messages, **kwargs):
    """Any messages: the same writes, close, cycle state, access log line and errors."""
    # Each run gets its own copy: a one-shot iterable of headers is read once.
    ours = observe(GatewayCycle, _copied(messages), **kwargs)
    theirs = observe(RequestResponseCycle, _copied(messages), **kwargs)
    assert ours == theirs


def _copied(messages: list[Any]) -> list[Any]:
    return [
        {**message, "headers": iter(list(message["headers"]))}
        if isinstance(message.get("headers"), OneShot)
        else message
        for message in messages
    ]


async def test_a_shutdown_while_the_head_waits_closes_the_connection():
    """Writes paused, then a shutdown ends keep-alive before they resume: the head says
    `connection: close`, as uvicorn's does (its check comes after the wait)."""
    observed = []
    for cls in (GatewayCycle, RequestResponseCycle):
        cycle, transport, _ = make_cycle(cls, keep_alive=True)
        cycle.flow.pause_writing()
        task = asyncio.create_task(cycle.send(start(200, GATEWAY_JSON)))
        await asyncio.sleep(0)
        assert not transport.writes  # waiting for the socket
        cycle.keep_alive = False  # what the protocol's shutdown() does
        cycle.flow.resume_writing()
        await task
        observed.append((transport.writes, cycle.keep_alive, cycle.response_started))
    assert observed[0] == observed[1]
    assert b"connection: close\r\n" in observed[0][0][0]


async def test_a_client_gone_while_the_head_waits_gets_nothing():
    """Writes paused, then the client disconnects: nothing written, the response not
    started, as with uvicorn."""
    observed = []
    for cls in (GatewayCycle, RequestResponseCycle):
        cycle, transport, _ = make_cycle(cls)
        cycle.flow.pause_writing()
        task = asyncio.create_task(cycle.send(start(200, GATEWAY_JSON)))
        await asyncio.sleep(0)
        cycle.disconnected = True
        cycle.flow.resume_writing()
        await task
        observed.append((transport.writes, cycle.response_started))
    assert observed == [([], False), ([], False)]
