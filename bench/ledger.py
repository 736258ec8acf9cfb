"""What the usage ledger costs: the recorder on the response path, and the writer per row.

    PYTHONPATH=$PWD .venv/bin/python bench/ledger.py [--rows 20000] [--calls 100000]

1. `LedgerWriter.record(ctx)` (build the row + queue put), timed per call while the
   drain task waits on the queue, so each put also wakes it, as on a live server:
   median and p99 of `perf_counter_ns` around the call (the timer's own ~0.1 µs included).
   With the ledger off this call does not happen: it is the whole difference.
2. The writer's own CPU per row (process CPU, the aiosqlite thread included) to drain
   `--rows` queued rows in batches of 500 into SQLite and into PostgreSQL
   (GATEWAY_TEST_POSTGRES_URL, a scratch database created and dropped here),
   the daily rollup included: rows from `--callers` different (team, subject)
   pairs (default 1: one rollup row per batch; 400: about 300 per batch).
3. The same rows through `store_rows` in batches of varied sizes (seeded, 20 to 400:
   what a live server's 0.2 s batches look like; a fixed 500 hides per-size costs
   such as SQLite preparing a statement), process CPU per row, SQLite and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from gateway.auth.principal import Principal
from gateway.context import RequestContext
from gateway.db import create_engine, migrate
from gateway.policy.compiled import Deployment
from gateway.usage.ledger import ledger_row
from gateway.usage.pricing import PriceSource, UnitPrices, cost_nanousd
from gateway.usage.rollup import store_rows
from gateway.usage.usage import Usage
from gateway.usage.writer import LedgerWriter

POSTGRES_URL = os.environ.get(
    "GATEWAY_TEST_POSTGRES_URL",
    "postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/gateway_test",
)
PRICES = UnitPrices(
    150_000_000, 600_000_000, 75_000_000, 150_000_000, 600_000_000, PriceSource.POLICY
)
PRINCIPALS = [
    Principal(f"team-{n % 20}", f"user-{n}@example.com", "client-1", frozenset(), "iss", 0.0)
    for n in range(400)
]
DEPLOYMENT = Deployment("openai-main", "gpt-4o-mini", 1.0, 1, prices=PRICES)


def answered(i: int, callers: int = 1) -> RequestContext:
    """A typical finished chat request: known caller, deployment, usage and price."""
    ctx = RequestContext(request_id=f"req_{i:032x}", endpoint="chat")
    ctx.principal, ctx.model = PRINCIPALS[i % callers], "gpt-4o-mini"
    ctx.deployment, ctx.attempts = DEPLOYMENT, 1
    usage = Usage(812, 231, 128)
    ctx.usage, ctx.prices, ctx.cost_nanousd = usage, PRICES, cost_nanousd(usage, PRICES)
    ctx.first_byte_s = 0.21
    return ctx


async def record_cost(calls: int, spool: Path) -> dict[str, float]:
    writer = LedgerWriter("sqlite+aiosqlite:///:memory:", spool, queue_rows=calls + 1)
    writer._batch_rows = calls + 1  # keep the drain task waiting on the queue
    writer._batch_interval_s = 3600
    samples = []
    for i in range(calls):
        if i % 100 == 0:
            # Between requests: the drain task took the queue, and waits on it again
            # (so the next put wakes it, as on a live server).
            writer._in_hand.clear()
            while not writer._queue.empty():
                writer._queue.get_nowait()
            waiting = asyncio.create_task(writer._next_batch())
            await asyncio.sleep(0)
        ctx = answered(i)
        start = time.perf_counter_ns()
        writer.record(ctx)
        samples.append(time.perf_counter_ns() - start)
        if i % 100 == 99:
            waiting.cancel()
            await asyncio.sleep(0)
    samples.sort()
    return {
        "median_us": statistics.median(samples) / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "mean_us": statistics.fmean(samples) / 1000,
    }


async def writer_cpu(url: str, rows: int, spool: Path, callers: int) -> dict[str, float]:
    await migrate(url)
    writer = LedgerWriter(url, spool, queue_rows=rows + 1, batch_rows=500)
    for i in range(rows):
        # Queued before the clock starts: only the writer counts.
        writer.record(answered(i, callers))
    cpu, wall = time.process_time(), time.perf_counter()
    await writer.start()
    while not writer._queue.empty() or writer._in_hand or not writer._is_waiting:  # noqa: ASYNC110  # polls the writer from outside: a bench
        await asyncio.sleep(0.005)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await writer.close()
    return {"cpu_us_per_row": cpu / rows * 1e6, "rows_per_s": rows / wall}


async def store_cpu(url: str, rows: int, callers: int) -> float:
    """CPU µs per row of `store_rows` in batches of 20 to 400 rows (seeded sizes)."""
    await migrate(url)
    engine = create_engine(url)
    sizes = random.Random(7)
    pending = [ledger_row(answered(i, callers), 0.01) for i in range(rows)]
    batches = []
    while pending:
        size = sizes.randint(20, 400)
        batches.append(pending[:size])
        pending = pending[size:]
    try:
        cpu = time.process_time()
        for batch in batches:
            async with engine.begin() as conn:
                await store_rows(conn, batch)
        return (time.process_time() - cpu) / rows * 1e6
    finally:
        await engine.dispose()


async def scratch_postgres() -> tuple[str, str]:
    admin = make_url(POSTGRES_URL)
    name = f"gateway_bench_{secrets.token_hex(4)}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return dsn, admin.set(database=name).render_as_string(hide_password=False)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--callers", type=int, default=1, help="1 to 400")
    args = parser.parse_args()
    if not 1 <= args.callers <= len(PRINCIPALS):
        parser.error(f"--callers must be 1 to {len(PRINCIPALS)}")
    with tempfile.TemporaryDirectory() as tmp:
        record = await record_cost(args.calls, Path(tmp) / "spool-record")
        print(
            f"record (row + queue put): median {record['median_us']:.2f} µs, "
            f"p99 {record['p99_us']:.2f} µs, mean {record['mean_us']:.2f} µs "
            f"over {args.calls} calls"
        )
        sqlite = await writer_cpu(
            f"sqlite+aiosqlite:///{tmp}/bench.db",
            args.rows,
            Path(tmp) / "spool-sqlite",
            args.callers,
        )
        print(
            f"writer, SQLite: {sqlite['cpu_us_per_row']:.1f} µs CPU per row, "
            f"{sqlite['rows_per_s']:.0f} rows/s"
        )
        varied = await store_cpu(f"sqlite+aiosqlite:///{tmp}/varied.db", args.rows, args.callers)
        print(f"store_rows, varied batches, SQLite: {varied:.1f} µs CPU per row")
        admin_dsn, url = await scratch_postgres()
        try:
            pg = await writer_cpu(url, args.rows, Path(tmp) / "spool-pg", args.callers)
            await _drop(admin_dsn, url)
            admin_dsn, url = await scratch_postgres()
            pg_varied = await store_cpu(url, args.rows, args.callers)
        finally:
            await _drop(admin_dsn, url)
        print(
            f"writer, PostgreSQL: {pg['cpu_us_per_row']:.1f} µs CPU per row (gateway process "
            f"only), {pg['rows_per_s']:.0f} rows/s"
        )
        print(f"store_rows, varied batches, PostgreSQL: {pg_varied:.1f} µs CPU per row")


async def _drop(admin_dsn: str, url: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
