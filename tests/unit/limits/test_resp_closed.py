"""A connection Redis closes as it opens (at its maxclients; a proxy whose backend is
down) is never kept: every call fails with a connection error, never anything else, and
the first call once Redis accepts again is answered. On asyncio's loop and on uvloop's
(the server's), which raises RuntimeError on a write to a closed transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from gateway.limits.resp import NotSent, RespConnection
from tests.support.closing_redis import Doorman

Runner = Callable[[Coroutine[Any, Any, None]], None]
RUNNERS: dict[str, Runner] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.fixture
def doorman() -> Iterator[Doorman]:
    server = Doorman()
    yield server
    server.close()


def _connection(port: int) -> RespConnection:
    return RespConnection("127.0.0.1", port, timeout_s=0.5, scripts=("return 1", "return 2"))


@pytest.mark.parametrize("loop", RUNNERS)
def test_a_connection_closed_as_it_opens_is_never_kept(loop: str, doorman: Doorman) -> None:
    """Before: on uvloop the connection closed as it opened was kept, and every call
    after (Redis back too) raised RuntimeError: each limited request a 500, for good."""

    async def scenario() -> None:
        conn = _connection(doorman.port)
        try:
            for _ in range(20):
                with pytest.raises(OSError):  # NotSent, ConnectionError: the outage path
                    await conn.call(("PING",))
            doorman.full = False
            assert await conn.call(("PING",)) == b"PONG"  # the first call once it accepts
        finally:
            await conn.close()

    RUNNERS[loop](scenario())


@pytest.mark.parametrize("loop", RUNNERS)
def test_callers_sharing_a_connect_that_closed_are_refused_then_served(
    loop: str, doorman: Doorman
) -> None:
    """Concurrent callers share one connect: none is handed a closed connection."""

    async def scenario() -> None:
        conn = _connection(doorman.port)
        try:
            for _ in range(5):
                results = await asyncio.gather(
                    *(conn.call(("PING",)) for _ in range(10)), return_exceptions=True
                )
                assert all(isinstance(r, OSError) for r in results), results
            doorman.full = False
            assert (
                await asyncio.gather(*(conn.call(("PING",)) for _ in range(10))) == [b"PONG"] * 10
            )
        finally:
            await conn.close()

    RUNNERS[loop](scenario())


@pytest.mark.parametrize("loop", RUNNERS)
def test_a_command_meeting_a_closed_connection_is_not_sent(loop: str, doorman: Doorman) -> None:
    """The connection closed under it (its end not yet told to the client): the command
    is not written, NotSent says so (none of it can run later), the next call connects
    anew. Before: it was written to all the same (the bytes dropped), and the caller
    told ConnectionError, as though the command might still run."""
    doorman.full = False

    async def scenario() -> None:
        conn = _connection(doorman.port)
        try:
            assert await conn.call(("PING",)) == b"PONG"
            link = conn._link
            assert link is not None and link.transport is not None
            link.transport.close()  # connection_lost comes at the loop's next turn
            with pytest.raises(NotSent):
                await conn.call(("PING",))
            assert await conn.call(("PING",)) == b"PONG"
        finally:
            await conn.close()

    RUNNERS[loop](scenario())
