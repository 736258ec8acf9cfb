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


async def test_a_users_week_and_month_usd_budgets_are_rebuilt_from_that_users_rows() -> None:
    """After a restart each per-user budget is rebuilt from the ledger rows of that user
    in its own period: tokens for a token budget, nano-USD for a USD one; the team's from
    the whole team's rows."""
    from gateway.limits.plan import Estimate, build_plan
    from gateway.limits.rebuild import rebuilt
    from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
    from gateway.policy.schema import PerUserSpec

    asked: list[tuple[str, str | None, int, int]] = []

    async def sums(team: str, subject: str | None, start: int, end: int) -> tuple[int, int]:
        asked.append((team, subject, start, end))
        return (10 if subject is None else 3) * (end - start) // 86_400_000, 5 * len(asked)

    per_user = PerUserSpec(budgets=[{"period": "week", "tokens": 9}, {"period": "month", "usd": 1}])
    team = TeamRules(
        "t", True, frozenset(), budgets=(Budget(BudgetPeriod.WEEK, 99, None),), per_user=per_user
    )
    plan = build_plan(team, "alice", Estimate(0, 0), 1_750_000_000_000)
    seeds = await rebuilt(sums, "t", "alice", plan.budgets)
    team_week, user_week, user_month = (check for check, _ in seeds)
    assert [used for _, used in seeds] == [70, 21, 15]
    assert asked == [
        ("t", None, team_week.starts_ms, team_week.resets_ms),
        ("t", "alice", user_week.starts_ms, user_week.resets_ms),
        ("t", "alice", user_month.starts_ms, user_month.resets_ms),
    ]
