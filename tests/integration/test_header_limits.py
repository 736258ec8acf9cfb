"""What a client may send before the app sees its request, against a real `gateway serve`:
bounded request heads (431) and a deadline for head and body (408 / dropped), on raw sockets.

Before, a 64 MiB header was read to the end and answered 200, and a client that sent
nothing was held open forever.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.support.serving import ServeProcess, serve_process

CLIENT_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp_path = tmp_path_factory.mktemp("edge")
    # `exchange` reads until the server closes: an idle kept-alive connection closes at once.
    env = {"GATEWAY_CLIENT_TIMEOUT_S": str(CLIENT_TIMEOUT_S), "GATEWAY_KEEPALIVE_TIMEOUT_S": "1"}
    with serve_process(tmp_path, env) as running:
        yield running


def exchange(port: int, request: bytes, *, read_timeout_s: float = 10) -> bytes:
    """Send `request` on a fresh connection; everything the server answers until it closes.
    A server that closes while we still send (as it should, early) is not an error."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout_s) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def request_id_of(answer: bytes) -> str:
    """The answer's x-request-id: every answer has one, a refusal before the app too."""
    head_part = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    found = [
        line.split(":", 1)[1].strip()
        for line in head_part.split("\r\n")[1:]
        if line.lower().startswith("x-request-id:")
    ]
    assert len(found) == 1, head_part
    return found[0]


def head(*headers: str, target: str = "/healthz") -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_healthy(server: ServeProcess) -> None:
    assert httpx.get(f"{server.origin}/healthz", timeout=5).status_code == 200


def test_a_normal_head_is_served(server: ServeProcess) -> None:
    """Forty ordinary headers of 1 KiB: 200."""
    headers = [f"x-h{i}: {'a' * 1000}" for i in range(40)]
    assert status_of(exchange(server.port, head(*headers))) == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        head(f"x-big: {'a' * 21 * 1024}"),
        head(f"Authorization: Bearer {'a' * 21 * 1024}", target="/v1/models"),
        head(target="/healthz?" + "q" * 21 * 1024),
        head(*[f"x-h{i}: 1" for i in range(101)]),
        head(*[f"x-h{i}: {'a' * 3300}" for i in range(20)]),
    ],
    ids=[
        "21KiB-header-line",
        "21KiB-bearer-line",
        "21KiB-request-line",
        "101-headers",
        "65KiB-in-all",
    ],
)
def test_oversized_heads_get_431(server: ServeProcess, request_bytes: bytes) -> None:
    """A 21 KiB line, 101 headers or 65 KiB in all: 431 with an error body, connection closed."""
    answer = exchange(server.port, request_bytes)
    assert status_of(answer) == 431, answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_header_fields_too_large"
    assert request_id_of(answer).startswith("req_")
    assert_healthy(server)


@pytest.mark.parametrize(
    "request_bytes",
    [
        head("Content-Length: 99999999999999999999999", target="/v1/models"),
        head("Content-Length: -1", target="/v1/models"),
        head("Content-Length: 1", "Content-Length: 2", target="/v1/models"),
        head("Content-Length: 3", "Transfer-Encoding: chunked", target="/v1/models"),
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\rSet-Cookie: evil=1\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\x01def\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-note: abc\x7fdef\r\n\r\n",
    ],
    ids=[
        "huge-length",
        "negative-length",
        "two-lengths",
        "length-and-chunked",
        "garbage",
        "cr-in-a-header",
        "ctl-in-a-header",
        "del-in-a-header",
    ],
)
def test_unparsable_http_is_a_400_in_openais_error_shape(
    server: ServeProcess, request_bytes: bytes
) -> None:
    """Bad framing, or a control character in a header, is refused before the app, like
    uvicorn does, but with the JSON error body and the x-request-id every other answer has
    (was text/plain "Invalid HTTP request received.", then no x-request-id)."""
    answer = exchange(server.port, request_bytes)
    assert status_of(answer) == 400, answer[:200]
    head_part, body = answer.split(b"\r\n\r\n", 1)
    assert b"content-type: application/json" in head_part.lower()
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_http_request")
    # A new id, never the one the bad head tried to send.
    request_id = request_id_of(answer)
    assert request_id.startswith("req_") and request_id != request_id_of(
        exchange(server.port, request_bytes)
    )
    assert_healthy(server)


@pytest.mark.parametrize("token_bytes", [12 * 1024, 16 * 1024])
def test_a_large_bearer_token_reaches_the_token_check(
    server: ServeProcess, token_bytes: int
) -> None:
    """An Entra ID-sized token (12 KiB; 16 KiB, the most the verifier takes) is not a 431:
    the token check answers it, here 401 invalid_token."""
    token = f"eyJhbGciOiJSUzI1NiJ9.{'a' * (token_bytes - 34)}.c2lnbmF0dXJl"
    assert len(token) == token_bytes
    request = head(f"Authorization: Bearer {token}", "Connection: close", target="/v1/models")
    answer = exchange(server.port, request)
    assert status_of(answer) == 401, answer[:200]
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert b'error="invalid_token"' in head_part
    assert json.loads(body)["error"]["type"] == "authentication_error"


def test_an_endless_header_is_cut_early(server: ServeProcess) -> None:
    """64 MiB in one header: 431 after at most the limits' worth, within a second."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nx-big: ")
        sent = 0
        chunk = b"a" * 65536
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while part := sock.recv(65536):
                answer += part
        except ConnectionResetError:
            pass
    # What was sent includes the kernel's socket buffers (a few MiB on loopback).
    assert sent < 8 * 1024 * 1024, f"the server read {sent} bytes of one header"
    assert answer == b"" or status_of(answer) == 431
    assert time.monotonic() - started < 5
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    assert any(line.get("event") == "head_too_large" for line in lines)
    assert_healthy(server)


def test_a_client_that_sends_nothing_is_dropped(server: ServeProcess) -> None:
    """A connection that never sends a byte is answered 408 and closed within the timeout."""
    started = time.monotonic()
    answer = exchange(server.port, b"", read_timeout_s=CLIENT_TIMEOUT_S + 5)
    assert status_of(answer) == 408
    assert request_id_of(answer).startswith("req_")
    assert CLIENT_TIMEOUT_S - 0.5 < time.monotonic() - started < CLIENT_TIMEOUT_S + 3


def trickle(server: ServeProcess, start: bytes, byte: bytes) -> bytes:
    """Send `start`, then `byte` every 0.3 s until the server hangs up (or the timeout
    plus 5 s passed); what the server answered."""
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(start)
        try:
            while time.monotonic() - started < CLIENT_TIMEOUT_S + 5:
                sock.sendall(byte)
                time.sleep(0.3)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while part := sock.recv(65536):
                answer += part
        except ConnectionResetError:
            pass
    return answer


def test_slowloris_headers_are_dropped_within_the_timeout(server: ServeProcess) -> None:
    """A header byte every 0.3 s: 408 and closed within the configured timeout, logged."""
    started = time.monotonic()
    answer = trickle(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"x")
    assert time.monotonic() - started < CLIENT_TIMEOUT_S + 3
    assert status_of(answer) == 408
    assert_healthy(server)
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    dropped = [line for line in lines if line.get("event") == "client_timeout"]
    assert dropped and dropped[-1]["phase"] == "headers" and dropped[-1]["slow_clients_total"] >= 1


def test_a_slow_body_is_dropped_within_the_timeout(server: ServeProcess) -> None:
    """Headers in time, then a body that trickles: cut within the timeout (408 or closed)."""
    started = time.monotonic()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        b"content-type: application/json\r\ncontent-length: 100000\r\n\r\n{"
    )
    answer = trickle(server, request, b" ")
    assert time.monotonic() - started < CLIENT_TIMEOUT_S + 3
    assert answer == b"" or status_of(answer) in (401, 408)
    assert_healthy(server)


def test_limits_hold_under_workers(tmp_path: Path) -> None:
    """`--workers 2`: each worker refuses an oversized head with 431."""
    env = {"GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0", "GATEWAY_MAX_HEADERS": "20"}
    env["GATEWAY_KEEPALIVE_TIMEOUT_S"] = "1"  # `exchange` reads until the server closes
    with serve_process(tmp_path, env, ("--workers", "2")) as running:
        for _ in range(4):
            answer = exchange(running.port, head(*[f"x-h{i}: 1" for i in range(21)]))
            assert status_of(answer) == 431
        assert status_of(exchange(running.port, head(*[f"x-h{i}: 1" for i in range(19)]))) == 200
