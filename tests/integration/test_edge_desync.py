"""The HTTP edge against a raw-socket attacker (probe p13), on a real `gateway serve`
(GatewayHttpProtocol is only there):

- an `Upgrade` header the read-start rewrite misses (its request's head after another
  request's body in one read, or its name split across reads) ended the request at its
  head, and its body was then served as a request of its own (request smuggling); now
  nothing more is read: an earlier request still gets its answer, then the connection
  closes;
- a chunked body's trailer fields were merged into the request's headers (a token, an
  `X-Forwarded-For`) and were not bounded (an endless trailer field: quadratic CPU);
- a whole answer a client never reads was held in memory for ever.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_header_limits import exchange, status_of
from tests.support.processes import run_gateway
from tests.support.serving import ServeProcess, serve_process

CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, str, Path]]:
    tmp_path = tmp_path_factory.mktemp("edge")
    env = {"GATEWAY_CLIENT_TIMEOUT_S": "3", "GATEWAY_TRUSTED_PROXIES": "127.0.0.1"}
    env["GATEWAY_KEEPALIVE_TIMEOUT_S"] = "1"  # the reads here last until the server closes
    with serve_process(tmp_path, env) as running:
        done = run_gateway("token", "--team", "demo", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        yield running, done.stdout.split()[-1], tmp_path


def _answers(raw: bytes) -> list[tuple[int, str]]:
    """(status, x-request-id) of each answer in `raw`, in order."""
    found = []
    for match in re.finditer(rb"HTTP/1\.1 (\d{3}) ", raw):
        head = raw[match.start() :].split(b"\r\n\r\n", 1)[0]
        request_id = ""
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"x-request-id:"):
                request_id = line.split(b":", 1)[1].strip().decode()
        found.append((int(match.group(1)), request_id))
    return found


def _reads(port: int, *reads: bytes, pause_s: float = 0.3) -> bytes:
    """Send each of `reads` as its own TCP write, a pause between; all that comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for data in reads:
            sock.sendall(data)
            time.sleep(pause_s)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return answer


def _post(token: str, body: str, request_id: str, *extra: str) -> bytes:
    lines = [
        "POST /v1/chat/completions HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {token}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"X-Request-Id: {request_id}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


SMUGGLED = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Request-Id: SMUGGLED\r\n\r\n"


@pytest.mark.parametrize("upgrade", ["Upgrade: h2c", "Upgrade: websocket"])
def test_an_upgrade_after_another_requests_body_in_one_read_smuggles_nothing(
    served: tuple[ServeProcess, str, Path], upgrade: str
) -> None:
    """Read 1: a request's head; read 2: its body and the next head (with Upgrade); read
    3: that head's body, itself a request. Two requests, three answers, the third the
    hidden one; now the first is answered and the connection closes."""
    server, token, _ = served
    second = _post(token, SMUGGLED.decode("latin-1"), "SECOND", "Connection: Upgrade", upgrade)
    answer = _reads(server.port, _post(token, CHAT, "FIRST"), CHAT.encode() + second, SMUGGLED)
    assert _answers(answer) == [(200, "FIRST")], answer[:600]


def test_an_upgrade_header_split_across_reads_smuggles_nothing(
    served: tuple[ServeProcess, str, Path],
) -> None:
    server, token, _ = served
    head = _post(token, SMUGGLED.decode("latin-1"), "OUTER", "Connection: Upgrade", "Upgrade: h2c")
    cut = head.index(b"\r\nUpgrade") + 5
    answer = _reads(server.port, head[:cut], head[cut:], SMUGGLED)
    answers = _answers(answer)
    assert [status for status, _ in answers] == [400], answer[:600]
    assert "SMUGGLED" not in {request_id for _, request_id in answers}


def _chunked(token: str | None, trailer: bytes) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    body = CHAT.encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + auth.encode()
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        b"X-Forwarded-For: 1.1.1.1\r\nConnection: close\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n"
        + trailer
        + b"\r\n"
    )


def test_a_trailer_is_never_a_header(served: tuple[ServeProcess, str, Path]) -> None:
    """A token only in the trailer does not authenticate; a trailer X-Forwarded-For does
    not replace the trusted proxy's in the access log."""
    server, token, _ = served
    answer = exchange(server.port, _chunked(None, f"Authorization: Bearer {token}\r\n".encode()))
    assert status_of(answer) == 401, answer[:300]
    answer = exchange(server.port, _chunked(token, b"X-Forwarded-For: 6.6.6.6\r\n"))
    assert status_of(answer) == 200, answer[:300]
    time.sleep(0.5)
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    clients = {line.get("client") for line in lines if line.get("msg") == "request"}
    assert "6.6.6.6" not in clients and "1.1.1.1" in clients


def test_an_endless_trailer_field_is_cut_like_a_head(
    served: tuple[ServeProcess, str, Path],
) -> None:
    """The trailer field never ends: cut once past the head's bounds, 431 (it ran to the
    client deadline, its CPU quadratic in its length; without a token too)."""
    server, token, _ = served
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_chunked(token, b"X-T: ")[:-2])
        sent = 0
        try:
            while sent < 8 << 20 and time.monotonic() - start < 10:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert sent < 8 << 20, sent  # refused early (kernel buffers took some after the close)
    assert time.monotonic() - start < 2.5  # not at the client deadline (3 s)
    time.sleep(0.3)
    assert '"limit":"chunk lines or trailer"' in server.stderr()


def test_a_whole_answer_the_client_never_reads_is_dropped_at_the_deadline(
    served: tuple[ServeProcess, str, Path],
) -> None:
    """A large answer (embeddings, ~19 MB) to a client that reads nothing: dropped once the
    client deadline (3 s here) passes with nothing read, its buffer freed."""
    server, token, _ = served
    body = json.dumps(
        {"model": "text-embedding-3-small", "input": ["a"] * 1024, "dimensions": 2048}
    ).encode()
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    try:
        sock.sendall(head + body)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "too slow reading" not in server.stderr():
            time.sleep(0.5)
        assert "client too slow reading its answer: dropped" in server.stderr()
    finally:
        sock.close()
