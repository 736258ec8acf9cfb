"""The response head written in a few calls (gateway/response_head.py) against
uvicorn's own cycle as the oracle: the same bytes on the wire, the same framing of the
body after it, the same refusals."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from gateway.response_head import GatewayCycle, fast_head

DEFAULT_HEADERS = [(b"server", b"uvicorn"), (b"date", b"Sun, 06 Dec 2026 13:00:00 GMT")]


class Wire:
    """A transport that keeps what is written."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


def cycle_of(kind: type[RequestResponseCycle], *, method: str, keep_alive: bool) -> Any:
    wire = Wire()
    scope: Any = {"type": "http", "method": method, "headers": []}
    return kind(
        scope=scope,
        transport=wire,  # type: ignore[arg-type]
        flow=FlowControl(wire),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=list(DEFAULT_HEADERS),
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )


async def exchange(
    kind: type[RequestResponseCycle],
    status: int,
    headers: list[Any],
    *,
    method: str = "POST",
    keep_alive: bool = True,
    body: bytes = b"{}",
) -> tuple[Any, ...]:
    """What one cycle of `kind` writes for a head and a body, and the state it keeps (or
    the exception it raised)."""
    cycle = cycle_of(kind, method=method, keep_alive=keep_alive)
    try:
        await cycle.send({"type": "http.response.start", "status": status, "headers": headers})
        head = cycle.transport.written
        await cycle.send({"type": "http.response.body", "body": body, "more_body": False})
    except Exception as error:  # compared with the oracle's
        return ("raised", type(error), str(error))
    return (
        head,
        cycle.transport.written,
        cycle.chunked_encoding,
        cycle.expected_content_length,
        cycle.keep_alive,
        cycle.response_complete,
    )


async def both(status: int, headers: list[Any], **kwargs: Any) -> tuple[Any, Any]:
    uvicorns = await exchange(RequestResponseCycle, status, headers, **kwargs)
    ours = await exchange(GatewayCycle, status, headers, **kwargs)
    return uvicorns, ours


ANSWER = [
    (b"content-type", b"application/json"),
    (b"x-request-id", b"req_0123456789abcdef"),
    (b"x-ratelimit-limit-requests", b"100"),
    (b"x-ratelimit-remaining-requests", b"99"),
    (b"x-ratelimit-reset-requests", b"600ms"),
    (b"content-length", b"2"),
]


async def test_an_answer_s_head_is_uvicorn_s_byte_for_byte() -> None:
    uvicorns, ours = await both(200, ANSWER)
    assert ours == uvicorns
    assert ours[0].startswith(b"HTTP/1.1 200 OK\r\nserver: uvicorn\r\n")
    assert ours[0].endswith(b"content-length: 2\r\n\r\n")
    assert fast_head(200, DEFAULT_HEADERS + ANSWER, keep_alive=True, method="POST") is not None


async def test_a_stream_s_head_without_a_length_is_chunked() -> None:
    uvicorns, ours = await both(200, [(b"content-type", b"text/event-stream")])
    assert ours == uvicorns
    assert b"transfer-encoding: chunked\r\n\r\n" in ours[0]


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses_are_not_chunked(status: int) -> None:
    uvicorns, ours = await both(status, [(b"x-request-id", b"r")], body=b"")
    assert ours == uvicorns
    assert b"transfer-encoding" not in ours[0]


async def test_a_head_request_is_not_chunked() -> None:
    uvicorns, ours = await both(200, [(b"x-a", b"1")], method="HEAD", body=b"")
    assert ours == uvicorns


async def test_a_connection_that_closes_says_so() -> None:
    uvicorns, ours = await both(200, ANSWER, keep_alive=False)
    assert ours == uvicorns
    assert b"connection: close\r\n" in ours[0]


@pytest.mark.parametrize(
    "headers",
    [
        [(b"Content-Type", b"text/plain"), (b"content-length", b"2")],  # lower-cased by uvicorn
        [(b"connection", b"close"), (b"content-length", b"2")],  # acted on by uvicorn
        [(b"transfer-encoding", b"chunked")],
        [(b"x-a", b"1"), (b"content-length", b"2"), (b"content-length", b"3")],
        [(b"x_a!", b"1")],  # a valid token uvicorn writes, outside [a-z0-9-]
        [(b"", b"empty name")],
    ],
)
async def test_heads_left_to_uvicorn_come_out_as_uvicorn_writes_them(headers: list[Any]) -> None:
    uvicorns, ours = await both(200, headers)
    assert ours == uvicorns


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-a", b"split\r\nx-injected: 1")],  # a value with CR LF: refused, not written
        [(b"x-a", b"nul\x00")],
        [(b"x a", b"1")],  # a space in a name
        [(b"x-a:", b"1")],
        [(b"x-a", b"1", b"\r\nx-injected: 1")],  # not a pair
        [(b"x-a",)],
        [("x-a", "str")],
        [(b"content-length", b"two")],
    ],
)
async def test_bad_headers_are_refused_as_uvicorn_refuses_them(headers: list[Any]) -> None:
    uvicorns, ours = await both(200, headers)
    assert ours == uvicorns
    assert ours[0] == "raised"
    assert fast_head(200, DEFAULT_HEADERS + headers, keep_alive=True, method="GET") is None


async def test_an_unknown_status_is_left_to_uvicorn() -> None:
    uvicorns, ours = await both(999, [(b"x-a", b"1")])
    assert ours == uvicorns


NAME_BYTES = st.sampled_from(list(b"abcxyz0189-_ABZ!: \t\r\n\x00\x7f()"))
VALUE_BYTES = st.sampled_from(list(b"aZ09 -_,;:=\t\r\n\x00\x1f\x7f\x80\xff"))
NAMES = st.one_of(
    st.sampled_from(
        [b"content-type", b"content-length", b"x-request-id", b"connection", b"transfer-encoding"]
    ),
    st.lists(NAME_BYTES, max_size=12).map(bytes),
)
VALUES = st.one_of(
    st.sampled_from([b"0", b"12", b"chunked", b"close", b"keep-alive, Close", b""]),
    st.lists(VALUE_BYTES, max_size=16).map(bytes),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    headers=st.lists(st.tuples(NAMES, VALUES), max_size=8),
    status=st.sampled_from([200, 201, 204, 304, 400, 429, 500, 503]),
    method=st.sampled_from(["GET", "POST", "HEAD"]),
    keep_alive=st.booleans(),
)
def test_every_head_is_what_uvicorn_writes(
    headers: list[tuple[bytes, bytes]], status: int, method: str, keep_alive: bool
) -> None:
    uvicorns, ours = asyncio.run(both(status, headers, method=method, keep_alive=keep_alive))
    assert ours == uvicorns
