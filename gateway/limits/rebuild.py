"""Budget usage rebuilt from the usage ledger: what a team (or one user) used in a period.

Read only. Used when a backend has no counter for a current period: after a
restart, when Redis lost its keys, or when a budget is added mid-period (it then
counts what was already spent).

How it meets requests in flight and rows not yet written: a counter is rebuilt
once (a `seeded` mark, stamped after the ledger was read), by ADDING the ledger's
sum to the counter. Settles add only to a rebuilt counter (redis_scripts.py's
SETTLE): a request settling after the rebuild is counted by its settle (its ledger
row lands after it, so the sum did not include it); one settling before it is
left to the sum. Before the read, this process's ledger writer stores every row it
holds and replays its spool (after_own_rows), so every request this replica finished,
during a database outage too, is in the sum; other
replicas' writers land rows up to a batch interval (0.2 s) after a request ends, and
a request that ends during the read itself is in neither: those are missed
(under-counted); none is counted twice.
Reservations in flight when Redis lost its keys are gone with them (their requests
are counted all the same, by the sum or their settle, once they end).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cache.rules import CacheStatus
from gateway.limits.plan import BudgetRule, Scope, Unit
from gateway.usage.ledger import clean_identity
from gateway.usage.ledger_table import usage_ledger

# (team, subject or None for the whole team, start_ms, end_ms) → (tokens, nano-USD)
LedgerSums = Callable[[str, str | None, int, int], Awaitable[tuple[int, int]]]
SumsKey = tuple[str, str | None, int, int]
# How long a rebuild waits for this process's ledger rows to land before it reads anyway.
CAUGHT_UP_S = 2.0


def ledger_reader(engine: AsyncEngine) -> LedgerSums:
    async def sums(team: str, subject: str | None, start_ms: int, end_ms: int) -> tuple[int, int]:
        t = usage_ledger.c
        query = sa.select(
            sa.func.coalesce(sa.func.sum(t.input_tokens + t.output_tokens), 0),
            sa.func.coalesce(sa.func.sum(t.cost_nanousd), 0),
        ).where(
            t.team == team,
            t.at_ms >= start_ms,
            t.at_ms < end_ms,
            # A cache hit's row holds the tokens it saved; it spent nothing of a budget.
            sa.or_(t.cache.is_(None), t.cache != CacheStatus.HIT.value),
        )
        if subject is not None:  # as the ledger holds it (a long one ends in a digest)
            query = query.where(t.subject == clean_identity(subject))
        async with engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return int(row[0]), int(row[1])

    return sums


def after_own_rows(sums: LedgerSums, caught_up: Callable[[float], Awaitable[bool]]) -> LedgerSums:
    """`sums` read once this process's ledger writer has stored the rows it holds
    (`LedgerWriter.caught_up`, bounded by CAUGHT_UP_S). Without it, a counter rebuilt
    right after Redis lost its keys missed the requests finished in the last batch
    interval: their usage was in the lost keys and their rows not yet in the ledger.
    Other replicas' rows still land up to their batch interval late (README)."""

    async def read(team: str, subject: str | None, start_ms: int, end_ms: int) -> tuple[int, int]:
        await caught_up(CAUGHT_UP_S)
        return await sums(team, subject, start_ms, end_ms)

    return read


def shared_sums(sums: LedgerSums) -> LedgerSums:
    """`sums` with concurrent identical queries answered by one. After a restart every
    request of a busy team needs the same period's sum at once; without this each would
    read the ledger (hundreds of ms on a large one), together, while all of them wait.
    Nothing is kept once a query ends: the next one reads the ledger again. A waiter that
    is cancelled (its client left) does not cancel the query the others wait for."""
    running: dict[SumsKey, asyncio.Task[tuple[int, int]]] = {}

    def forget(key: SumsKey, task: asyncio.Task[tuple[int, int]]) -> None:
        if running.get(key) is task:
            del running[key]
        if not task.cancelled():
            task.exception()  # seen, even when every waiter left before it ended

    async def shared(team: str, subject: str | None, start_ms: int, end_ms: int) -> tuple[int, int]:
        key = (team, subject, start_ms, end_ms)
        task = running.get(key)
        if task is None:
            task = running[key] = asyncio.ensure_future(sums(*key))
            task.add_done_callback(lambda done: forget(key, done))
        return await asyncio.shield(task)

    return shared


async def rebuilt(
    sums: LedgerSums, team: str, subject: str, checks: tuple[BudgetRule, ...]
) -> tuple[tuple[BudgetRule, int], ...]:
    """Each check's usage so far this period, one query per (owner, period)."""
    found: dict[tuple[Scope, int, int], tuple[int, int]] = {}
    seeds = []
    for check in checks:
        where = (check.scope, check.starts_ms, check.resets_ms)
        if where not in found:
            owner = None if check.scope is Scope.TEAM else subject
            found[where] = await sums(team, owner, check.starts_ms, check.resets_ms)
        tokens, nanousd = found[where]
        seeds.append((check, tokens if check.unit is Unit.TOKENS else nanousd))
    return tuple(seeds)
