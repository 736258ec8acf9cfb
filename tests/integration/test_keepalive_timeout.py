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


def answered_then_idle(port: int, idle_s: float) -> bytes:
    """One request on a new connection, then what the connection gives after `idle_s`
    of silence (b"" once the server closed it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(REQUEST)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        time.sleep(idle_s)
        sock.settimeout(0.5)
        try:
            sock.sendall(REQUEST)
            return sock.recv(65536)
        except (TimeoutError, ConnectionError):
            return b""


def test_an_idle_connection_outlives_uvicorn_s_five_seconds(tmp_path):
    with serve_process(tmp_path, {}) as server:
        assert answered_then_idle(server.port, 6.0).startswith(b"HTTP/1.1 200")


def test_the_setting_closes_an_idle_connection_after_it(tmp_path):
    with serve_process(tmp_path, {"GATEWAY_KEEPALIVE_TIMEOUT_S": "1"}) as server:
        assert answered_then_idle(server.port, 2.5) == b""


def test_the_default_is_longer_than_a_balancer_s_idle_timeout():
    assert server_config(Settings()).timeout_keep_alive == 75
    settings = load_settings({"GATEWAY_KEEPALIVE_TIMEOUT_S": "120"})
    assert server_config(settings).timeout_keep_alive == 120
