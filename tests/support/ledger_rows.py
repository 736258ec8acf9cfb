"""Usage-ledger rows for report tests, stored as the ledger writer stores them.

    await insert_rows(engine, [ledger_row(team="search", input_tokens=10), ...])

`insert_rows` goes through the writer's `store_rows` (ledger + daily rollup, one
transaction); `insert_ledger_only` writes the ledger table alone, as a database
written before the rollup existed holds it.

`ledger_row` fills every column with a plausible value; `priced_row` also
computes `cost_nanousd` from the unit prices exactly as the gateway does.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.usage.ledger_table import usage_ledger
from gateway.usage.pricing import PriceSource, UnitPrices, cost_nanousd
from gateway.usage.rollup import store_rows
from gateway.usage.usage import Usage

_ids = itertools.count(1)


def at_ms(year: int, month: int, day: int, hour: int = 12) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp()) * 1000


def ledger_row(**overrides: Any) -> dict[str, Any]:
    n = next(_ids)
    row: dict[str, Any] = {
        "id": f"gw_{n:08d}",
        "request_id": f"req_{n:08d}",
        "at_ms": at_ms(2026, 1, 15),
        "endpoint": "chat",
        "team": "demo",
        "subject": "alice",
        "client_id": "client-1",
        "model": "small",
        "provider": "openai",
        "deployment": "openai/gpt-4o-mini",
        "upstream_model": "gpt-4o-mini",
        "stream": False,
        "status": 200,
        "outcome": "ok",
        "error_code": None,
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "tokens_estimated": False,
        "cost_nanousd": 0,
        "price_source": "policy",
        "price_input": 0,
        "price_output": 0,
        "price_cached_input": 0,
        "price_cache_write": 0,
        "price_reasoning": 0,
        "attempts": 1,
        "latency_ms": 120,
        "ttft_ms": None,
        "guardrails": None,
        "cache": None,
    }
    unknown = set(overrides) - set(row)
    assert not unknown, f"not ledger columns: {unknown}"
    row.update(overrides)
    return row


def priced_row(prices: UnitPrices, **overrides: Any) -> dict[str, Any]:
    """A row charged at `prices` (nano-USD per million tokens), its cost computed as the
    gateway computes it."""
    row = ledger_row(
        price_source=prices.source.value,
        price_input=prices.input,
        price_output=prices.output,
        price_cached_input=prices.cached_input,
        price_cache_write=prices.cache_write,
        price_reasoning=prices.reasoning,
        **overrides,
    )
    usage = Usage(
        row["input_tokens"],
        row["output_tokens"],
        cached_tokens=row["cached_tokens"],
        cache_write_tokens=row["cache_write_tokens"],
        reasoning_tokens=row["reasoning_tokens"],
    )
    row["cost_nanousd"] = cost_nanousd(usage, prices)
    return row


def prices(
    input: int,
    output: int,
    cached_input: int | None = None,
    cache_write: int | None = None,
    reasoning: int | None = None,
    source: PriceSource = PriceSource.POLICY,
) -> UnitPrices:
    return UnitPrices(
        input,
        output,
        input if cached_input is None else cached_input,
        input if cache_write is None else cache_write,
        output if reasoning is None else reasoning,
        source,
    )


async def insert_rows(engine: AsyncEngine, rows: Iterable[dict[str, Any]]) -> int:
    """Store rows as the ledger writer does; how many were new."""
    rows = list(rows)
    if not rows:
        return 0
    async with engine.begin() as conn:
        return await store_rows(conn, rows)


async def insert_ledger_only(engine: AsyncEngine, rows: Iterable[dict[str, Any]]) -> None:
    rows = list(rows)
    if rows:
        async with engine.begin() as conn:
            await conn.execute(usage_ledger.insert(), rows)
