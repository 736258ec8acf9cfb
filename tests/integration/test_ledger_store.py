"""Storing ledger batches (gateway/usage/rollup.py `store_rows`) against real SQLite and
PostgreSQL: the driver-SQL path adds each new row once, in the caller's transaction."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.usage.ledger_sql import SQLITE_INSERT_ROWS
from gateway.usage.ledger_table import usage_daily, usage_ledger
from gateway.usage.rollup import store_rows
from tests.support.ledger_rows import at_ms, ledger_row


def rows(count: int) -> list[dict]:
    return [
        ledger_row(
            team=("a", "b", None)[n % 3],
            at_ms=at_ms(2026, 2, 1 + n % 3),
            input_tokens=n % 17,
            status=(200, 502)[n % 2],
            stream=n % 4 == 0,
        )
        for n in range(count)
    ]


async def totals(engine: AsyncEngine) -> tuple[int, int, int, int]:
    """(ledger rows, ledger input tokens, rollup requests, rollup input tokens)."""
    async with engine.connect() as conn:
        ledger = (
            await conn.execute(sa.select(sa.func.count(), sa.func.sum(usage_ledger.c.input_tokens)))
        ).one()
        daily = (
            await conn.execute(
                sa.select(
                    sa.func.sum(usage_daily.c.requests), sa.func.sum(usage_daily.c.input_tokens)
                )
            )
        ).one()
    return tuple(int(value or 0) for value in (*ledger, *daily))  # type: ignore[return-value]


async def test_a_batch_larger_than_one_statement_part_stored_adds_only_its_new_rows(engine):
    """More rows than one SQLite statement carries, every third one already stored: the
    new ones are added once to the ledger and the rollup."""
    batch = rows(SQLITE_INSERT_ROWS + 50)
    stored = batch[::3]
    async with engine.begin() as conn:
        assert await store_rows(conn, stored) == len(stored)
    async with engine.begin() as conn:
        assert await store_rows(conn, batch) == len(batch) - len(stored)
    tokens = sum(row["input_tokens"] for row in batch)
    assert await totals(engine) == (len(batch), tokens, len(batch), tokens)


async def test_two_overlapping_batches_in_one_transaction_count_each_row_once(engine):
    """The second batch repeats part of the first, in the same transaction: what the
    first added stays, the repeats add nothing."""
    first, second = rows(30), rows(10)
    async with engine.begin() as conn:
        assert await store_rows(conn, first) == 30
        assert await store_rows(conn, [*first[:15], *second]) == 10
    tokens = sum(row["input_tokens"] for row in [*first, *second])
    assert await totals(engine) == (40, tokens, 40, tokens)


async def test_a_transaction_that_fails_after_storing_adds_nothing(engine):
    """The ledger rows and their rollup go or stay together with the caller's transaction."""
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await store_rows(conn, rows(5))
            raise RuntimeError("the batch's transaction fails")
    assert await totals(engine) == (0, 0, 0, 0)


async def test_stored_values_read_back_as_written(engine):
    """Booleans, NULLs and large integers keep their values through the driver SQL."""
    row = ledger_row(
        stream=True, tokens_estimated=True, team=None, cost_nanousd=2**62, ttft_ms=None
    )
    async with engine.begin() as conn:
        assert await store_rows(conn, [row]) == 1
    async with engine.connect() as conn:
        found = (await conn.execute(sa.select(usage_ledger))).one()._asdict()
    assert found == row
