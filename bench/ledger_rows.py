"""Generate N usage-ledger rows for one month, fast, for the report benchmarks.

    python bench/ledger_rows.py --rows 1000000 --month 2026-01 --database-url URL

Migrates the database first. SQLite: one transaction of `executemany` through the
stdlib driver; PostgreSQL: COPY (asyncpg `copy_records_to_table`). Rows are spread
evenly over the month with a seeded generator (20 teams, 8 models on 10
deployments, 400 subjects; 3 % errors, 1 % unpriced), priced as the gateway does.
Subjects belong to one team each (20 per team, as users do), or with
`--subjects independent` any subject with any team (the rollup's worst case: it
then has almost one row per ledger row).

Then the daily rollup is added to for the new rows, as the ledger writer would
have done: per day, the database sums the new rows (`rollup.ledger_day_rollup`)
and they are upserted with the writer's own statement (`rollup.add_to_daily`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from gateway.db import async_url, create_engine, migrate
from gateway.usage.ledger_table import usage_ledger
from gateway.usage.pricing import UNKNOWN_PRICES, PriceSource, UnitPrices, cost_nanousd
from gateway.usage.report_request import MS_PER_DAY
from gateway.usage.rollup import add_to_daily, ledger_day_rollup, rollup_from_sums
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


SUBJECTS_PER_TEAM = 20


def generate(
    count: int, month: str, seed: int = 7, first_id: int = 0, independent: bool = False
) -> Iterator[tuple[object, ...]]:
    """`count` rows as tuples in `COLUMNS` order."""
    rng = random.Random(seed + first_id)
    start_ms, end_ms = month_range_ms(month)
    step = (end_ms - start_ms) / max(count, 1)
    for n in range(count):
        model, provider, upstream, prices = DEPLOYMENTS[
            9 if rng.random() < 0.01 else rng.randrange(9)
        ]
        team_index = rng.randrange(len(TEAMS))
        team = TEAMS[team_index]
        if independent:
            subject = rng.randrange(len(TEAMS) * SUBJECTS_PER_TEAM)
        else:
            subject = team_index * SUBJECTS_PER_TEAM + rng.randrange(SUBJECTS_PER_TEAM)
        failed = rng.random() < 0.03
        input_tokens = 0 if failed else rng.randrange(1, 4000)
        output_tokens = 0 if failed else rng.randrange(0, 1500)
        cached = rng.randrange(0, input_tokens + 1) if input_tokens and rng.random() < 0.3 else 0
        reasoning = rng.randrange(0, output_tokens + 1) if model == "reasoner" else 0
        usage = Usage(input_tokens, output_tokens, cached_tokens=cached, reasoning_tokens=reasoning)
        yield (
            _id(first_id + n),
            f"req_{first_id + n:012d}",
            int(start_ms + n * step),
            "chat",
            team,
            f"user-{subject:03d}",
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


def _id(n: int) -> str:
    return f"gw_{n:012d}"


async def add_to_rollup(url: str, month: str, first_id: int, count: int) -> None:
    """Add the rows with ids [first_id, first_id + count) to the daily rollup, a day at a time."""
    engine = create_engine(url)
    start_ms, end_ms = month_range_ms(month)
    new = sa.and_(usage_ledger.c.id >= _id(first_id), usage_ledger.c.id < _id(first_id + count))
    try:
        for day in range(start_ms // MS_PER_DAY, end_ms // MS_PER_DAY):
            query = ledger_day_rollup(day * MS_PER_DAY, (day + 1) * MS_PER_DAY).where(new)
            async with engine.begin() as conn:
                daily = [rollup_from_sums(day, values) for values in await conn.execute(query)]
                await add_to_daily(conn, daily)
        if engine.dialect.name == "postgresql":
            async with engine.begin() as conn:
                await conn.execute(sa.text("ANALYZE usage_daily"))
    finally:
        await engine.dispose()


async def add_rows(
    url: str, count: int, month: str, first_id: int = 0, independent: bool = False
) -> None:
    """Migrate `url`, then add `count` generated rows (ids from `first_id`) and their rollup."""
    await migrate(url)
    rows = generate(count, month, first_id=first_id, independent=independent)
    parsed = async_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database
        await asyncio.to_thread(insert_sqlite, parsed.database, rows)
    else:
        await insert_postgres(url, rows)
    await add_to_rollup(url, month, first_id, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--month", default="2026-01")
    parser.add_argument("--database-url", default="sqlite+aiosqlite:///./bench-ledger.db")
    parser.add_argument("--first-id", type=int, default=0)
    parser.add_argument("--subjects", choices=["per-team", "independent"], default="per-team")
    args = parser.parse_args()
    began = time.perf_counter()
    independent = args.subjects == "independent"
    asyncio.run(add_rows(args.database_url, args.rows, args.month, args.first_id, independent))
    print(f"{args.rows} rows in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
