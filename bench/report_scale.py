"""How long `gateway report usage` takes as the month's ledger grows: 100k, 300k, 1M rows.

    python bench/report_scale.py [--sizes 100000 300000 1000000] [--databases sqlite postgres]
        [--subjects per-team|independent]

For each database, rows are added (bench/ledger_rows.py, with their daily
rollup) up to each size, then the report is built the way the CLI and the API
build it (`usage_report`) in four shapes: csv by team,model (the default),
csv and json by team,model,day, and focus. Prints a markdown table of wall-clock
seconds (best of `--repeat`) for bench/RESULTS.md.
PostgreSQL: a scratch database made and dropped here (needs CREATE DATABASE).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ledger_rows import add_rows
from gateway.db import create_engine
from gateway.usage.report_request import parse_report_request
from gateway.usage.reports import usage_report

MONTH = "2026-01"
SHAPES = [
    ("csv", "team,model"),
    ("csv", "team,model,day"),
    ("json", "team,model,day"),
    ("focus", "team,model"),
]
POSTGRES_ADMIN = "postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/postgres"


async def _timed_report(url: str, format: str, group_by: str, repeat: int) -> float:
    request = parse_report_request(MONTH, format, group_by, int(time.time() * 1000))
    engine = create_engine(url)
    best = float("inf")
    try:
        for _ in range(repeat):
            began = time.perf_counter()
            await usage_report(engine, request)
            best = min(best, time.perf_counter() - began)
    finally:
        await engine.dispose()
    return best


async def _admin(statement: str) -> None:
    dsn = make_url(POSTGRES_ADMIN).set(drivername="postgresql")
    conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _rollup_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(sa.text("SELECT COUNT(*) FROM usage_daily")) or 0)
    finally:
        await engine.dispose()


async def run(
    database: str, sizes: list[int], repeat: int, independent: bool
) -> list[tuple[int, list[float]]]:
    scratch = tempfile.mkdtemp(prefix="report-scale-")
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{scratch}/ledger.db"
    else:
        name = f"report_scale_{int(time.time())}"
        await _admin(f'CREATE DATABASE "{name}"')
        url = make_url(POSTGRES_ADMIN).set(database=name).render_as_string(hide_password=False)
    results = []
    have = 0
    try:
        for size in sizes:
            began = time.perf_counter()
            await add_rows(url, size - have, MONTH, first_id=have, independent=independent)
            print(
                f"{database}: {size} rows ({time.perf_counter() - began:.0f} s to add), "
                f"{await _rollup_rows(url)} rollup rows",
                file=sys.stderr,
            )
            have = size
            times = [await _timed_report(url, f, g, repeat) for f, g in SHAPES]
            print(f"  {' '.join(f'{t:.2f}' for t in times)}", file=sys.stderr)
            results.append((size, times))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # a million-row SQLite file
        if database == "postgres":
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--subjects", choices=["per-team", "independent"], default="per-team")
    args = parser.parse_args()
    independent = args.subjects == "independent"
    header = " | ".join(f"{f} by {g}" for f, g in SHAPES)
    print(f"| database | rows | {header} |")
    print("|---|---:|" + "---:|" * len(SHAPES))
    for database in args.databases:
        for size, times in asyncio.run(run(database, args.sizes, args.repeat, independent)):
            cells = " | ".join(f"{t:.2f} s" for t in times)
            print(f"| {database} | {size:,} | {cells} |")


if __name__ == "__main__":
    main()
