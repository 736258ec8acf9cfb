"""shared_sums: concurrent identical ledger queries answered by one, nothing kept after."""

from __future__ import annotations

import asyncio
import gc

import pytest

from gateway.limits.rebuild import shared_sums


class SlowLedger:
    """A ledger whose sums take a while; counts the queries it answers."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, str | None, int, int]] = []
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def sums(self, team: str, subject: str | None, start: int, end: int) -> tuple[int, int]:
        self.queries.append((team, subject, start, end))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return len(self.queries) * 100, 7


async def test_concurrent_identical_queries_read_the_ledger_once() -> None:
    ledger = SlowLedger()
    sums = shared_sums(ledger.sums)
    waiters = [asyncio.create_task(sums("t", None, 0, 10)) for _ in range(20)]
    await asyncio.sleep(0)
    ledger.release.set()
    assert await asyncio.gather(*waiters) == [(100, 7)] * 20
    assert ledger.queries == [("t", None, 0, 10)]


async def test_different_owners_or_periods_are_separate_queries() -> None:
    ledger = SlowLedger()
    sums = shared_sums(ledger.sums)
    keys = [("t", None, 0, 10), ("t", "alice", 0, 10), ("t", None, 10, 20), ("u", None, 0, 10)]
    waiters = [asyncio.create_task(sums(*key)) for key in keys + keys]
    await asyncio.sleep(0)
    ledger.release.set()
    results = await asyncio.gather(*waiters)
    assert sorted(ledger.queries, key=repr) == sorted(keys, key=repr)
    assert results[:4] == results[4:]  # each pair shared its query


async def test_nothing_is_kept_once_a_query_ends() -> None:
    ledger = SlowLedger()
    ledger.release.set()
    sums = shared_sums(ledger.sums)
    assert await sums("t", None, 0, 10) == (100, 7)
    await asyncio.sleep(0)  # the finished query is forgotten
    assert await sums("t", None, 0, 10) == (200, 7)  # read again: usage moved on
    assert len(ledger.queries) == 2


async def test_a_failure_reaches_every_waiter_and_the_next_call_retries() -> None:
    ledger = SlowLedger()
    ledger.fail = OSError("database gone")
    sums = shared_sums(ledger.sums)
    waiters = [asyncio.create_task(sums("t", None, 0, 10)) for _ in range(3)]
    await asyncio.sleep(0)
    ledger.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert len(ledger.queries) == 1
    await asyncio.sleep(0)
    ledger.fail = None
    assert await sums("t", None, 0, 10) == (200, 7)


async def test_a_waiter_that_leaves_does_not_cancel_the_others_query() -> None:
    ledger = SlowLedger()
    sums = shared_sums(ledger.sums)
    leaving = asyncio.create_task(sums("t", None, 0, 10))
    staying = asyncio.create_task(sums("t", None, 0, 10))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    ledger.release.set()
    assert await staying == (100, 7)
    assert len(ledger.queries) == 1


async def test_a_query_every_waiter_left_still_ends_quietly(caplog) -> None:
    """Its failure is seen (no "exception was never retrieved" when it is collected)."""
    ledger = SlowLedger()
    ledger.fail = OSError("database gone")
    sums = shared_sums(ledger.sums)
    alone = asyncio.create_task(sums("t", None, 0, 10))
    await asyncio.sleep(0)
    alone.cancel()
    ledger.release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    del alone
    gc.collect()
    assert "never retrieved" not in caplog.text
    ledger.fail = None
    assert await sums("t", None, 0, 10) == (200, 7)  # and the next call reads again
