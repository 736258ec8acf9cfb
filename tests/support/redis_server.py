"""A redis-server of a test's own, on its own port: to stop and start again for real
(the limits backend's outage tests)."""

from __future__ import annotations

import socket
import subprocess
import time

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(port: int, folder: str) -> subprocess.Popen[bytes]:
    """A Redis that loads folder/dump.rdb when there is one (what SHUTDOWN SAVE wrote:
    a Redis that comes back with its keys), once it answers PING."""
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with redis.Redis(port=port, socket_timeout=0.5) as client:
                if client.ping():
                    return process
        except (OSError, redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")
