"""A redis-server of a test's own, on its own port: to stop and start again for real
(the limits backend's outage tests)."""

from __future__ import annotations

import socket
import subprocess
import time

import redis

from gateway.limits.redis_generation import GENERATION_KEY


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(port: int, folder: str, *options: str) -> subprocess.Popen[bytes]:
    """A Redis that loads folder/dump.rdb when there is one (what SHUTDOWN SAVE wrote:
    a Redis that comes back with its keys), once it answers PING. `options`: more of
    redis-server's."""
    process = subprocess.Popen(
        [
            "redis-server",
            *("--port", str(port), "--save", "", "--appendonly", "no", "--dir", folder),
            *options,
        ],
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


def start_redis_as_before(port: int, folder: str) -> subprocess.Popen[bytes]:
    """start_redis, its saved keys trusted as a Redis that never went away would be (a
    healed partition, a paused process): the gateway treats a restarted Redis as a new
    server whose keys may be older than what it saw (limits/redis_generation.py), so the
    new process's run_id is recorded as the one the keys were written under."""
    process = start_redis(port, folder)
    with redis.Redis(port=port) as client:
        if client.exists(GENERATION_KEY):
            client.hset(GENERATION_KEY, "run", client.info("server")["run_id"])
    return process
