"""Generate N usage-ledger rows for one month, fast, for the report benchmarks.

    python bench/ledger_rows.py --rows 1000000 --month 2026-01 --database-url URL

Migrates the database first. SQLite: one transaction of `executemany` through the
stdlib driver; PostgreSQL: COPY (asyncpg `copy_records_to_table`). Rows are spread
evenly over the month with a seeded generator (20 teams, 8 models on 10
deployments, 400 subjects; 3 % errors, 1 % unpriced), priced as the gateway does.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy.engine import make_url

from gateway.db import async_url, migrate
from gateway.usage.ledger_table import usage_ledger
from gateway.usage.pricing import UNKNOWN_PRICES, PriceSource, UnitPrices, cost_nanousd
from gateway.usage.usage import Usage

COLUMNS = [column.name for column in usage_ledger.columns]
TEAMS = [f"team-{i:02d}" for i in range(20)]
DEPLOYMENTS = [
    (
        "small",
        "openai",
        "gpt-4o-mini",
        UnitPrices(
            150_000_000, 600_000_000, 75_000_000, 150_000_000, 600_000_000, PriceSource.TABLE
        ),
    ),
    (
        "large",
        "openai",
        "gpt-4o",
        UnitPrices(
            2_500_000_000,
            10_000_000_000,
            1_250_000_000,
            2_500_000_000,
            10_000_000_000,
            PriceSource.TABLE,
        ),
    ),
    (
        "large",
        "azure-east",
        "gpt-4o",
        UnitPrices(
            2_750_000_000,
            11_000_000_000,
            1_375_000_000,
            2_750_000_000,
            11_000_000_000,
            PriceSource.POLICY,
        ),
    ),
    (
        "claude",
        "anthropic",
        "claude-sonnet-4",
        UnitPrices(
            3_000_000_000,
            15_000_000_000,
            300_000_000,
            3_750_000_000,
            15_000_000_000,
            PriceSource.TABLE,
        ),
    ),
    (
        "reasoner",
        "openai",
        "o3",
        UnitPrices(
            2_000_000_000,
            8_000_000_000,
            500_000_000,
            2_000_000_000,
            8_000_000_000,
            PriceSource.TABLE,
        ),
    ),
    (
        "embed",
        "openai",
        "text-embedding-3-small",
        UnitPrices(20_000_000, 0, 20_000_000, 20_000_000, 0, PriceSource.TABLE),
    ),
    (
        "local",
        "vllm",
        "llama-3.1-70b",
        UnitPrices(
            100_000_000, 300_000_000, 100_000_000, 100_000_000, 300_000_000, PriceSource.POLICY
        ),
    ),
    (
        "odd",
        "openai",
        "gpt-4.1-nano",
        UnitPrices(
            100_000_001, 300_000_003, 25_000_007, 100_000_001, 300_000_003, PriceSource.POLICY
        ),
    ),
    (
        "gemini",
        "google",
        "gemini-2.5-flash",
        UnitPrices(
            300_000_000, 2_500_000_000, 75_000_000, 300_000_000, 2_500_000_000, PriceSource.TABLE
        ),
    ),
    ("mystery", "vllm", "mystery-model", UNKNOWN_PRICES),
]


def month_range_ms(month: str) -> tuple[int, int]:
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def generate(
    count: int, month: str, seed: int = 7, first_id: int = 0
) -> Iterator[tuple[object, ...]]:
    """`count` rows as tuples in `COLUMNS` order."""
    rng = random.Random(seed + first_id)
    start_ms, end_ms = month_range_ms(month)
    step = (end_ms - start_ms) / max(count, 1)
    for n in range(count):
        model, provider, upstream, prices = DEPLOYMENTS[
            9 if rng.random() < 0.01 else rng.randrange(9)
        ]
        team = rng.choice(TEAMS)
        failed = rng.random() < 0.03
        input_tokens = 0 if failed else rng.randrange(1, 4000)
        output_tokens = 0 if failed else rng.randrange(0, 1500)
        cached = rng.randrange(0, input_tokens + 1) if input_tokens and rng.random() < 0.3 else 0
        reasoning = rng.randrange(0, output_tokens + 1) if model == "reasoner" else 0
        usage = Usage(input_tokens, output_tokens, cached_tokens=cached, reasoning_tokens=reasoning)
        yield (
            f"gw_{first_id + n:012d}",
            f"req_{first_id + n:012d}",
            int(start_ms + n * step),
            "chat",
            team,
            f"user-{rng.randrange(400):03d}",
            f"client-{team}",
            model,
            provider,
            f"{provider}/{upstream}",
            upstream,
            rng.random() < 0.5,
            rng.choice((429, 502)) if failed else 200,
            "error" if failed else "ok",
            "upstream" if failed else None,
            input_tokens,
            output_tokens,
            cached,
            0,
            reasoning,
            rng.random() < 0.05,
            cost_nanousd(usage, prices),
            prices.source.value,
            prices.input,
            prices.output,
            prices.cached_input,
            prices.cache_write,
            prices.reasoning,
            1,
            rng.randrange(50, 5000),
            None,
            None,
            None,
        )


def insert_sqlite(path: str, rows: Iterator[tuple[object, ...]]) -> None:
    placeholders = ", ".join("?" for _ in COLUMNS)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        conn.executemany(
            f"INSERT INTO usage_ledger ({', '.join(COLUMNS)}) VALUES ({placeholders})", rows
        )


async def insert_postgres(url: str, rows: Iterator[tuple[object, ...]]) -> None:
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table("usage_ledger", records=rows, columns=COLUMNS)
        await conn.execute("ANALYZE usage_ledger")
    finally:
        await conn.close()


async def add_rows(url: str, count: int, month: str, first_id: int = 0) -> None:
    """Migrate `url`, then add `count` generated rows (ids from `first_id`)."""
    await migrate(url)
    rows = generate(count, month, first_id=first_id)
    parsed = async_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database
        await asyncio.to_thread(insert_sqlite, parsed.database, rows)
    else:
        await insert_postgres(url, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--month", default="2026-01")
    parser.add_argument("--database-url", default="sqlite+aiosqlite:///./bench-ledger.db")
    parser.add_argument("--first-id", type=int, default=0)
    args = parser.parse_args()
    began = time.perf_counter()
    asyncio.run(add_rows(args.database_url, args.rows, args.month, args.first_id))
    print(f"{args.rows} rows in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
