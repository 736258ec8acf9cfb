"""The ledger writer against real SQLite and PostgreSQL: idempotent batches, the spool
while the database is away (SQLite locked by another process; PostgreSQL behind a
proxy the test cuts), the queue's bound, the flush on close, and spools left behind.
"""

from __future__ import annotations

import asyncio
import fcntl
import inspect
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.principal import Principal
from gateway.context import RequestContext
from gateway.usage.ledger import ledger_row
from gateway.usage.rollup import store_rows
from gateway.usage.spool import REJECTED_FILE, encode_rows
from gateway.usage.writer import LedgerWriter
from tests.support.sqlite_lock import sqlite_write_lock
from tests.support.tcp_proxy import TcpProxy

ALICE = Principal("demo", "alice", "app", frozenset(), "iss", 0.0)


def finished(i: int) -> RequestContext:
    ctx = RequestContext(request_id=f"req-{i}", endpoint="chat")
    ctx.principal, ctx.model = ALICE, "m"
    return ctx


async def counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT request_id, COUNT(*) FROM usage_ledger GROUP BY request_id")
        )
        return {request_id: n for request_id, n in found}


async def eventually(check: Callable[[], object], within_s: float = 20.0) -> None:
    """Until `check()` (a value, or an awaitable of one) is true."""
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


class Database:
    """The test's database and a way to make it go away for the writer only."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.tmp_path = tmp_path
        self.is_sqlite = url.startswith("sqlite")
        self._proxy: TcpProxy | None = None

    @contextmanager
    def reachable(self) -> Iterator[str]:
        """The URL the writer uses: the database itself, or PostgreSQL through the proxy."""
        if self.is_sqlite:
            yield self.url
            return
        parsed = make_url(self.url)
        with TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
            self._proxy = proxy
            yield parsed.set(port=proxy.port).render_as_string(hide_password=False)

    @contextmanager
    def away(self) -> Iterator[None]:
        if self.is_sqlite:
            with sqlite_write_lock(self.tmp_path / "gateway.db"):
                yield
            return
        assert self._proxy is not None
        self._proxy.cut()
        try:
            yield
        finally:
            self._proxy.restore()


@pytest.fixture
def database(engine: AsyncEngine, database_url: str, tmp_path: Path) -> Database:
    return Database(database_url, tmp_path)


async def test_a_batch_written_twice_is_in_the_ledger_once(engine):
    """INSERT … ON CONFLICT (id) DO NOTHING: a replayed batch changes nothing."""
    rows = [ledger_row(finished(i), 0.01) for i in range(20)]
    added = []
    for _ in range(2):
        async with engine.begin() as conn:
            added.append(await store_rows(conn, rows))
    assert added == [20, 0]
    assert await counts(engine) == {f"req-{i}": 1 for i in range(20)}


async def test_the_same_request_recorded_twice_is_one_row(engine, database, tmp_path):
    """The row's id is the gateway's key: writing the same request again changes nothing."""
    writer = LedgerWriter(database.url, tmp_path / "spool", batch_interval_s=0.01)
    await writer.start()
    ctx = finished(1)
    writer.record(ctx)
    await eventually(lambda: counts(engine))
    writer.record(ctx)
    await writer.close()
    assert await counts(engine) == {"req-1": 1}


async def test_close_writes_every_queued_row(engine, database, tmp_path):
    """Rows still in the queue at shutdown reach the database before close returns."""
    writer = LedgerWriter(database.url, tmp_path / "spool", batch_interval_s=5)
    await writer.start()
    for i in range(300):
        writer.record(finished(i))
    await writer.close()
    assert await counts(engine) == {f"req-{i}": 1 for i in range(300)}
    assert not writer.spool.path.exists()


async def test_caught_up_waits_for_the_rows_queued_so_far_not_the_batch_interval(
    engine, database, tmp_path
):
    """What a budget rebuild waits for: every row queued before it asked is stored, at
    once (not after the batch interval); a database that hangs runs out the timeout."""
    writer = LedgerWriter(database.url, tmp_path / "spool", batch_interval_s=30)
    await writer.start()
    try:
        assert await writer.caught_up(1.0)  # nothing queued: nothing to wait for
        for i in range(120):
            writer.record(finished(i))
        started = time.monotonic()
        assert await writer.caught_up(10.0)
        assert time.monotonic() - started < 5  # well within the 30 s interval
        assert await counts(engine) == {f"req-{i}": 1 for i in range(120)}
        if database.is_sqlite:  # a write lock the writer waits out: the timeout ends the wait
            writer.record(finished(500))
            with database.away():
                assert not await writer.caught_up(0.2)
    finally:
        await writer.close()


async def test_caught_up_replays_the_spool_before_a_rebuild_reads_the_ledger(
    engine, database, tmp_path
):
    """Probe p10: Redis lost a team's keys while the database was away; once it was back,
    the replica rebuilding the budget summed the ledger without the rows it had spooled
    (they waited for the outage's next retry): the budget stayed under-counted by them.
    Now `caught_up` has the spool replayed first. The clock stands still here, so the
    writer would never retry by itself."""
    with database.reachable() as url:
        writer = LedgerWriter(url, tmp_path / "spool", batch_interval_s=0.02, clock=lambda: 0.0)
        await writer.start()
        writer.record(finished(0))
        await eventually(lambda: counts(engine))
        with database.away():
            for i in range(1, 11):
                writer.record(finished(i))
            await eventually(lambda: lines(writer.spool.path) == 10)
            assert not await writer.caught_up(3.0)  # tried: still away
        assert await writer.caught_up(10.0)
        assert await counts(engine) == {f"req-{i}": 1 for i in range(11)}
        await writer.close()


async def test_rows_beyond_the_queue_bound_go_to_the_spool_not_away(engine, database, tmp_path):
    """At the bound (queue_rows) a row is spooled at once, synchronously; none is dropped."""
    writer = LedgerWriter(database.url, tmp_path / "spool", queue_rows=5, batch_interval_s=0.01)
    await writer.start()
    for i in range(40):  # no await in between: the drain task cannot run
        writer.record(finished(i))
    assert writer.overflowed == 35
    assert lines(writer.spool.path) == 35  # on disk already, fsync'd
    await writer.close()
    assert await counts(engine) == {f"req-{i}": 1 for i in range(40)}


async def test_while_the_database_is_away_rows_spool_and_replay_once_in_order(
    engine, database, tmp_path
):
    """SQLite locked by another process / PostgreSQL's connection cut: batches go to the
    spool (fsync'd); when it is back they are replayed and the spool is emptied."""
    with database.reachable() as url:
        writer = LedgerWriter(url, tmp_path / "spool", batch_interval_s=0.02)
        await writer.start()
        writer.record(finished(0))
        await eventually(lambda: counts(engine))  # connected and writing
        with database.away():
            for i in range(1, 31):
                writer.record(finished(i))
                await asyncio.sleep(0.01)
            await eventually(lambda: lines(writer.spool.path) == 30)
            assert await counts(engine) == {"req-0": 1}
            for i in range(31, 51):
                writer.record(finished(i))
        await eventually(lambda: _has(engine, 51), within_s=30)
        assert writer.spool.path.stat().st_size == 0  # replayed, then emptied
        await writer.close()
    assert await counts(engine) == {f"req-{i}": 1 for i in range(51)}
    assert not writer.spool.path.exists()


async def _has(engine: AsyncEngine, n: int) -> bool:
    return len(await counts(engine)) == n


async def test_rows_spooled_at_close_are_replayed_by_the_next_start(engine, database, tmp_path):
    """Shut down while the database is away: the rows stay in the spool; the next process
    replays them at start and deletes the file."""
    spool = tmp_path / "spool"
    with database.reachable() as url:
        writer = LedgerWriter(url, spool, batch_interval_s=0.02)
        await writer.start()
        with database.away():
            for i in range(10):
                writer.record(finished(i))
            await writer.close()
        assert lines(writer.spool.path) == 10
        assert await counts(engine) == {}
        successor = LedgerWriter(url, spool, batch_interval_s=0.02)
        await successor.start()
        await eventually(lambda: _has(engine, 10))
        await successor.close()
    assert not writer.spool.path.exists()
    assert await counts(engine) == {f"req-{i}": 1 for i in range(10)}


def _orphan(spool: Path, name: str, rows: int, extra: bytes = b"") -> Path:
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / name
    path.write_bytes(encode_rows(ledger_row(finished(i), 0.01) for i in range(rows)) + extra)
    return path


async def test_a_spool_held_by_a_live_process_is_left_to_it(engine, database, tmp_path):
    """A spool file under its writer's flock belongs to a live process: not replayed;
    once the lock is gone (the process died) the next start replays it."""
    spool = tmp_path / "spool"
    path = _orphan(spool, "ledger-1-alive.jsonl", 5)
    held = os.open(path, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    writer = LedgerWriter(database.url, spool, batch_interval_s=0.01)
    await writer.start()
    await asyncio.sleep(0.5)
    await writer.close()
    assert path.exists() and await counts(engine) == {}
    os.close(held)  # the owner dies: the kernel drops its lock
    writer = LedgerWriter(database.url, spool, batch_interval_s=0.01)
    await writer.start()
    await eventually(lambda: _has(engine, 5))
    await writer.close()
    assert not path.exists()


async def test_processes_starting_together_replay_an_orphan_once(engine, database, tmp_path):
    """Three writers start at once on one leftover spool: one claims it; rows once, file gone."""
    spool = tmp_path / "spool"
    path = _orphan(spool, "ledger-2-dead.jsonl", 200)
    writers = [LedgerWriter(database.url, spool, batch_interval_s=0.01) for _ in range(3)]
    await asyncio.gather(*(w.start() for w in writers))
    await eventually(lambda: not path.exists())
    await asyncio.gather(*(w.close() for w in writers))
    assert await counts(engine) == {f"req-{i}": 1 for i in range(200)}


async def test_damaged_spool_lines_are_set_aside_and_the_rest_replayed(engine, database, tmp_path):
    """A garbage line and a line cut short by a crash go to rejected.jsonl; nothing blocks."""
    spool = tmp_path / "spool"
    good = encode_rows(ledger_row(finished(i), 0.01) for i in range(3, 6))
    _orphan(spool, "ledger-3-dead.jsonl", 3, b"not json\n" + good + b'{"id": "cut sh')
    writer = LedgerWriter(database.url, spool, batch_interval_s=0.01)
    await writer.start()
    await eventually(lambda: _has(engine, 6))
    await writer.close()
    rejected = (spool / REJECTED_FILE).read_bytes().splitlines()
    assert rejected == [b"not json", b'{"id": "cut sh']
    assert not (spool / "ledger-3-dead.jsonl").exists()


async def test_a_row_the_database_refuses_is_set_aside_not_retried_forever(
    engine, database, tmp_path
):
    """A row the database cannot take (here: a value PostgreSQL's int4 refuses, or a NOT
    NULL broken behind our back) goes to rejected.jsonl; the rest of its batch lands."""
    writer = LedgerWriter(database.url, tmp_path / "spool", batch_interval_s=0.05)
    await writer.start()
    for i in range(3):
        writer.record(finished(i))
    bad = ledger_row(finished(99), 0.01)
    bad["outcome"] = None  # NOT NULL
    writer._queue.put_nowait(bad)  # as a future bug would: bypassing ledger_row
    await writer.close()
    assert await counts(engine) == {f"req-{i}": 1 for i in range(3)}
    (line,) = (tmp_path / "spool" / REJECTED_FILE).read_bytes().splitlines()
    assert orjson.loads(line)["request_id"] == "req-99"
