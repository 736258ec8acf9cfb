"""The limits' RESP connection against a real Redis and against servers that misbehave:
pipelined callers get their own replies, a silent or vanishing server fails what is in
flight within the timeout, and the next command connects again."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from gateway.limits.resp import NotSent, RespConnection, RespError, ServerChanged


async def test_many_callers_share_one_connection_and_get_their_own_replies(
    redis_url: str,
) -> None:
    conn = RespConnection.from_url(redis_url, timeout_s=2)
    assert conn is not None
    key = f"resp-test-{uuid.uuid4().hex}"
    try:
        replies = await asyncio.gather(*(conn.call(("ECHO", f"n{i}")) for i in range(300)))
        assert replies == [f"n{i}".encode() for i in range(300)]
        batch = await conn.call_many([("INCRBY", key, 5), ("HGET", key, "x"), ("GET", key)])
        assert batch[0] == 5 and isinstance(batch[1], RespError) and batch[2] == b"5"
        with pytest.raises(RespError):
            await conn.call(("NOSUCHCOMMAND",))
        assert await conn.call(("DEL", key)) == 1  # an error reply leaves the link usable
    finally:
        await conn.close()


@asynccontextmanager
async def fake_server(
    on_connect: Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], object],
) -> AsyncIterator[int]:
    """A TCP server on a free port; `on_connect(n, ...)` serves its n-th connection."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await on_connect(len(writers), reader, writer)  # type: ignore[misc]
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await asyncio.sleep(0.01)  # let the handlers see their connections end


async def test_a_silent_server_times_out_and_the_next_call_connects_again() -> None:
    async def serve(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        if n > 1:  # the first connection never answers
            writer.write(b"+PONG\r\n")
            await writer.drain()
        await reader.read()

    async with fake_server(serve) as port:
        conn = RespConnection("127.0.0.1", port, timeout_s=0.2)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await conn.call(("PING",))
        assert time.monotonic() - started < 1.5
        assert await conn.call(("PING",)) == b"PONG"
        await conn.close()


async def test_a_silent_server_is_given_up_on_neither_early_nor_late() -> None:
    async def serve(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers

    async with fake_server(serve) as port:
        conn = RespConnection("127.0.0.1", port, timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await conn.call(("PING",))
        waited = time.monotonic() - started
        # A tick less at most; loop slack on a loaded machine (a bug that waits a second
        # tick or twice the timeout still fails it).
        assert 0.5 * 4 / 5 - 0.05 <= waited <= 0.5 + 0.4
        await conn.close()


async def test_slow_replies_within_the_timeout_never_time_out() -> None:
    """Replies that each take half the timeout, one command after another and several
    in flight at once, for several timeouts in all: none is given up on. (The watchdog
    may give up from 80 % of the timeout: 150 ms of margin for a loaded machine.)"""

    async def serve(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            if line.startswith(b"*"):  # a command's array header: answer it, slowly
                await asyncio.sleep(0.25)
                writer.write(b"+PONG\r\n")
                await writer.drain()

    async with fake_server(serve) as port:
        conn = RespConnection("127.0.0.1", port, timeout_s=0.5)
        started = time.monotonic()
        while time.monotonic() - started < 2.5:  # five timeouts
            assert await conn.call(("PING",)) == b"PONG"
        await conn.close()


async def test_a_connection_dropped_mid_command_fails_it_and_the_next_reconnects() -> None:
    async def serve(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        if n == 1:
            writer.write(b":1\r\n:2")  # one reply and half of the next, then gone
            writer.close()
            return
        writer.write(b"+PONG\r\n")
        await writer.drain()
        await reader.read()

    async with fake_server(serve) as port:
        conn = RespConnection("127.0.0.1", port, timeout_s=2)
        with pytest.raises(ConnectionError):
            await conn.call_many([("PING",), ("PING",)])
        assert await conn.call(("PING",)) == b"PONG"
        await conn.close()


async def test_a_reply_nobody_asked_for_breaks_the_connection() -> None:
    async def serve(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"+PONG\r\n+EXTRA\r\n" if n == 1 else b"+PONG\r\n")
        await writer.drain()
        await reader.read()

    async with fake_server(serve) as port:
        conn = RespConnection("127.0.0.1", port, timeout_s=2)
        assert await conn.call(("PING",)) == b"PONG"
        await asyncio.sleep(0.05)
        assert conn._link is None  # dropped: later replies could no longer be matched
        assert await conn.call(("PING",)) == b"PONG"
        await conn.close()


async def test_nobody_listening_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = RespConnection("127.0.0.1", port, timeout_s=0.5)
    with pytest.raises(OSError):
        await conn.call(("PING",))


def start_redis(port: int, directory: str, *options: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--dir", directory, *options],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            if time.monotonic() > deadline:
                server.terminate()
                raise
            time.sleep(0.05)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_a_password_and_database_in_the_url_are_used(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_redis(port, str(tmp_path), "--requirepass", "s3cret")
    try:
        good = RespConnection.from_url(f"redis://:s3cret@127.0.0.1:{port}/3", timeout_s=2)
        assert good is not None
        info = await good.call(("CLIENT", "INFO"))
        assert b" db=3 " in info
        await good.close()
        bad = RespConnection.from_url(f"redis://:wrong@127.0.0.1:{port}", timeout_s=2)
        assert bad is not None
        with pytest.raises(ConnectionError, match="setup"):
            await bad.call(("PING",))
    finally:
        server.terminate()
        server.wait(10)


async def test_a_greeting_that_finds_another_server_fails_the_call_that_connected(
    redis_url: str,
) -> None:
    """Each new connection is greeted first; when the greeting's reply says the server
    is not the one the commands were made for, the call that connected is not sent
    (ServerChanged), the connection is kept, and the next call goes on it."""
    answers = iter([True, False])
    greeted: list[object] = []

    def greet(reply: object) -> bool:
        greeted.append(reply)
        return next(answers)

    conn = RespConnection.from_url(redis_url, timeout_s=2, greeting=(lambda: ("ECHO", "hi"), greet))
    assert conn is not None
    key = f"resp-greet-{uuid.uuid4().hex}"
    try:
        assert await conn.call(("INCR", key)) == 1  # the same server: sent
        await conn.close()  # the next call connects again: greeted again
        with pytest.raises(ServerChanged):
            await conn.call(("INCR", key))
        assert conn.is_live()  # kept
        assert await conn.call(("INCR", key)) == 2  # not sent before: counted once
        assert greeted == [b"hi", b"hi"]
        await conn.call(("DEL", key))
    finally:
        await conn.close()


async def test_a_greeting_the_server_cannot_answer_yet_fails_the_connection(redis_url: str) -> None:
    """A greeting whose reader raises ConnectionError (Redis still loading a restored
    snapshot: LOADING) fails the call as not sent and drops the connection; the next call
    connects and greets again."""
    greeted: list[object] = []

    def greet(reply: object) -> bool:
        greeted.append(reply)
        if len(greeted) == 1:
            raise ConnectionError("Redis cannot run the generation check yet (LOADING)")
        return True

    conn = RespConnection.from_url(redis_url, timeout_s=2, greeting=(lambda: ("ECHO", "hi"), greet))
    assert conn is not None
    try:
        with pytest.raises(NotSent, match="LOADING"):
            await conn.call(("ECHO", "first"))
        assert not conn.is_live()
        assert await conn.call(("ECHO", "second")) == b"second"
        assert greeted == [b"hi", b"hi"]
    finally:
        await conn.close()
