"""A request asking to upgrade the protocol (`Upgrade: h2c` from `curl --http2` on an
http:// URL, a WebSocket handshake) is served as the HTTP request it also is: the gateway
upgrades to nothing, and RFC 9110 §7.8 says such a server ignores the header.

Before, uvicorn's parser ended the request at its head: a POST's body was dropped (400
"The request body is empty"), and a WebSocket handshake got Starlette's bare 403.
Raw sockets against a real `gateway serve` (GatewayHttpProtocol is only there).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gateway.edge import without_upgrade
from tests.integration.test_header_limits import exchange, status_of
from tests.support.processes import run_gateway
from tests.support.serving import ServeProcess, serve_process

CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, str]]:
    tmp_path = tmp_path_factory.mktemp("upgrade")
    # `exchange` reads until the server closes: an idle kept-alive connection closes at once.
    with serve_process(tmp_path, {"GATEWAY_KEEPALIVE_TIMEOUT_S": "1"}) as running:
        done = run_gateway("token", "--team", "demo", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        yield running, done.stdout.split()[-1]


def post(token: str, *headers: str, body: str = CHAT) -> bytes:
    lines = [
        "POST /v1/chat/completions HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {token}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def body_of(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize(
    "upgrade",
    [
        (
            "Connection: Upgrade, HTTP2-Settings",
            "Upgrade: h2c",
            "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
        ),
        ("Connection: upgrade", "upgrade: websocket"),
        ("Connection: Upgrade", "UPGRADE:h2c"),
        ("Connection: keep-alive, Upgrade", "Upgrade: TLS/1.2, HTTP/1.1"),
    ],
)
def test_a_post_asking_to_upgrade_is_answered_with_its_body_read(
    served: tuple[ServeProcess, str], upgrade: tuple[str, ...]
) -> None:
    server, token = served
    answer = exchange(server.port, post(token, *upgrade))
    assert status_of(answer) == 200, answer[:400]
    assert body_of(answer)["object"] == "chat.completion"


def test_a_websocket_handshake_is_an_http_request_like_any_other(
    served: tuple[ServeProcess, str],
) -> None:
    """No token: the gateway's own 401, OpenAI-shaped, not a WebSocket refusal."""
    server, _ = served
    handshake = (
        b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    # The answer keeps the connection open (no `close` was asked for): `exchange` reads until
    # uvicorn's 5 s keep-alive ends it, so it must wait longer than that.
    answer = exchange(server.port, handshake, read_timeout_s=20)
    assert status_of(answer) == 401, answer[:400]
    assert body_of(answer)["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        (b"x\r\nUpgrade: h2c\r\n\r\n", b"x\r\nX-Ignored-Upgrade: h2c\r\n\r\n"),
        (
            b"x\r\nupgrade: a\r\nUPGRADE:b\r\n",
            b"x\r\nX-Ignored-Upgrade: a\r\nX-Ignored-Upgrade:b\r\n",
        ),
        # the body after the head's blank line is never touched
        (b"x\r\nHost: y\r\n\r\n{\r\nupgrade: 1}", b"x\r\nHost: y\r\n\r\n{\r\nupgrade: 1}"),
        (b"x\r\nX-Upgrade: 1\r\n\r\n", b"x\r\nX-Upgrade: 1\r\n\r\n"),
    ],
)
def test_only_a_head_upgrade_header_is_renamed(data: bytes, expected: bytes) -> None:
    assert without_upgrade(data) == expected
