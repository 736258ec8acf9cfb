"""An idle keep-alive connection is kept `GATEWAY_KEEPALIVE_TIMEOUT_S` (75 by default:
longer than a load balancer's own 60 s idle timeout), not uvicorn's 5 s: a balancer that
reused a connection the gateway was closing answered its client 502 (probe p19). Real
`gateway serve`, raw sockets."""

from __future__ import annotations

import socket
import time

from gateway.server import server_config
from gateway.settings import Settings, load_settings
from tests.support.serving import serve_process

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"


def one_answer(sock: socket.socket) -> bytes:
    """One whole answer read from `sock` (its head, then its content-length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, body
        body += chunk
    return head + b"\r\n\r\n" + body


def closed_after(port: int, idle_s: float) -> bool:
    """One request on a new connection, then `idle_s` of silence: has the server closed
    the connection by then (the next read sees its end)?"""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(REQUEST)
        assert one_answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(idle_s)
        sock.settimeout(0.2)
        try:
            return sock.recv(65536) == b""
        except TimeoutError:
            pass  # still open: it serves another request
        sock.settimeout(10)
        sock.sendall(REQUEST)
        assert one_answer(sock).startswith(b"HTTP/1.1 200")
        return False


def test_an_idle_connection_outlives_uvicorn_s_five_seconds(tmp_path):
    with serve_process(tmp_path, {}) as server:
        assert not closed_after(server.port, 6.0)


def test_the_setting_closes_an_idle_connection_after_it(tmp_path):
    with serve_process(tmp_path, {"GATEWAY_KEEPALIVE_TIMEOUT_S": "1"}) as server:
        assert closed_after(server.port, 3.0)


def test_the_default_is_longer_than_a_balancer_s_idle_timeout():
    assert server_config(Settings()).timeout_keep_alive == 75
    settings = load_settings({"GATEWAY_KEEPALIVE_TIMEOUT_S": "120"})
    assert server_config(settings).timeout_keep_alive == 120
