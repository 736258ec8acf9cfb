"""Response heads on the wire: the gateway's HTTP protocol (gateway/server.py, heads from
gateway/http_head.py) and uvicorn's own httptools protocol, serving the same app on
127.0.0.1, answer the same raw requests with the same bytes.

Every exchange ends with a `Connection: close` request, so each server closes and the
whole answer is read to the end. The date header is off: both would write the clock.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from gateway.http_head import GatewayCycle
from gateway.server import GatewayHttpProtocol

JSON_BODY = b'{"id":"chatcmpl-1","object":"chat.completion"}'
GATEWAY_HEADERS = [
    (b"x-request-id", b"req_1"),
    (b"x-gateway-deployment", b"openai/gpt-4o-mini"),
    (b"x-ratelimit-limit-requests", b"600"),
    (b"x-ratelimit-remaining-requests", b"599"),
    (b"x-ratelimit-reset-requests", b"100ms"),
]
# path -> (status, headers, body chunks)
ANSWERS: dict[str, tuple[int, list[tuple[bytes, bytes]], list[bytes]]] = {
    "/json": (
        200,
        [
            (b"content-type", b"application/json"),
            *GATEWAY_HEADERS,
            (b"x-gateway-cost-usd", b"0.000123"),
            (b"content-length", str(len(JSON_BODY)).encode()),
        ],
        [JSON_BODY],
    ),
    "/stream": (
        200,
        [(b"content-type", b"text/event-stream; charset=utf-8"), *GATEWAY_HEADERS],
        [b"data: 1\n\n", b"data: [DONE]\n\n", b""],
    ),
    "/no-content": (204, [(b"x-request-id", b"req_2")], [b""]),
    "/not-modified": (304, [(b"etag", b'"a"')], [b""]),
    "/app-closes": (
        200,
        [(b"Connection", b"keep-alive, Close"), (b"Content-Length", b"2")],
        [b"ok"],
    ),
    "/chunked-by-app": (
        200,
        [(b"Content-Type", b"text/plain"), (b"Transfer-Encoding", b"chunked")],
        [b"abc", b""],
    ),
    "/bad-value": (200, [(b"x-bad", b"a\r\nb")], [b""]),
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan: nothing to set up
        return
    while (await receive()).get("more_body"):
        pass
    status, headers, chunks = ANSWERS[scope["path"]]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    for index, chunk in enumerate(chunks):
        more = index < len(chunks) - 1
        await send({"type": "http.response.body", "body": chunk, "more_body": more})


@asynccontextmanager
async def serving(http: Any) -> AsyncIterator[tuple[int, uvicorn.Server]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        http=http,
        lifespan="off",
        log_config=None,
        access_log=False,
        date_header=False,
        loop="none",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "the server failed to start"
            await asyncio.sleep(0.01)
        yield sock.getsockname()[1], server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def exchange(port: int, data: bytes) -> bytes:
    """Send `data` at once; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def request(path: str, *, method: str = "GET", version: str = "1.1", close: bool = False) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


LAST = request("/json", close=True)
EXCHANGES = {
    **{f"get{path}": request(path) + LAST for path in ANSWERS if path != "/bad-value"},
    "head-json": request("/json", method="HEAD") + LAST,
    "head-stream": request("/stream", method="HEAD") + LAST,
    "keep-alive-then-close": request("/json") + request("/stream") + LAST,
    "pipelined-mixed": request("/no-content") + request("/json", method="HEAD") + LAST,
    "client-closes": request("/stream", close=True),
    "http-1.0": request("/json", version="1.0"),
    "http-1.0-stream": request("/stream", version="1.0"),
    "app-closes": request("/app-closes") + LAST,  # the second request is never answered
    "refused-header": request("/bad-value") + LAST,  # uvicorn closes, nothing sent
}


@pytest.fixture(scope="module")
def answers() -> dict[str, tuple[bytes, bytes]]:
    """Each exchange's answer from the gateway's protocol and from uvicorn's."""

    async def collect() -> dict[str, tuple[bytes, bytes]]:
        got: dict[str, list[bytes]] = {name: [] for name in EXCHANGES}
        for http in (GatewayHttpProtocol, "httptools"):
            async with serving(http) as (port, _):
                for name, data in EXCHANGES.items():
                    got[name].append(await exchange(port, data))
        return {name: (ours, theirs) for name, (ours, theirs) in got.items()}

    return asyncio.run(collect())


@pytest.mark.parametrize("name", list(EXCHANGES))
def test_the_same_bytes_as_uvicorn(answers: dict[str, tuple[bytes, bytes]], name: str) -> None:
    """JSON, streams, HEAD, 204/304, keep-alive, pipelining, HTTP/1.0, `Connection:
    close` from either side, a refused header: byte for byte what uvicorn sends."""
    ours, theirs = answers[name]
    assert ours == theirs


def test_the_answers_are_what_a_client_expects(answers: dict[str, tuple[bytes, bytes]]) -> None:
    """The comparison is not vacuous: a JSON answer with its length, a chunked stream."""
    json_answer, _ = answers["get/json"]
    assert json_answer.startswith(
        b"HTTP/1.1 200 OK\r\nserver: uvicorn\r\ncontent-type: application/json\r\n"
    )
    assert b"\r\ncontent-length: %d\r\n\r\n" % len(JSON_BODY) + JSON_BODY in json_answer
    stream_answer, _ = answers["get/stream"]
    assert b"\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n" in stream_answer
    assert answers["http-1.0"][0].count(b"connection: close\r\n") == 1
    assert answers["refused-header"][0] == b""


async def test_every_request_is_answered_by_the_gateway_cycle() -> None:
    """The protocol swaps in GatewayCycle for each request, pipelined ones included."""
    async with serving(GatewayHttpProtocol) as (port, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request("/json") + request("/json"))  # pipelined, kept alive
            await writer.drain()
            answer = b""
            while answer.count(JSON_BODY) < 2:
                answer += await asyncio.wait_for(reader.read(65536), 10)
            cycles = [protocol.cycle for protocol in server.server_state.connections]
            assert len(cycles) == 1
            assert type(cycles[0]) is GatewayCycle
            assert cycles[0].response_complete
        finally:
            writer.close()
