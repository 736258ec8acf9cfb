"""The daily rollup against real SQLite and PostgreSQL: it always equals the ledger's sums.

Written with the ledger rows (duplicates, replays and concurrent writers counted once),
filled by migration 0006 from a ledger written before it existed, and read by reports
whose totals equal SUM over the ledger.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.principal import Principal
from gateway.context import RequestContext
from gateway.db import alembic_config, create_engine, migrate
from gateway.usage.ledger import ledger_row as request_row
from gateway.usage.ledger_table import usage_daily
from gateway.usage.pricing import usd_text
from gateway.usage.report_request import parse_report_request
from gateway.usage.reports import usage_report
from gateway.usage.rollup import rebuild_rollup
from gateway.usage.spool import encode_rows
from gateway.usage.writer import LedgerWriter
from tests.support.ledger_rows import (
    at_ms,
    insert_ledger_only,
    insert_rows,
    ledger_row,
    priced_row,
    prices,
)

NOW = at_ms(2026, 3, 1)
TENTHS = prices(100_000_000, 200_000_000, cached_input=700_000_000)
ODD = prices(100_000_001, 300_000_003, cache_write=50_000_003, reasoning=123_456_789)

# The ledger's own sums per day and key, computed from the ledger alone.
LEDGER_SUMS = sa.text(
    """
    SELECT at_ms / 86400000, team, subject, client_id, model, provider, deployment,
           upstream_model, price_source, price_input, price_output, price_cached_input,
           price_cache_write, price_reasoning, cache,
           COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),
           SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens),
           SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(cost_nanousd)
    FROM usage_ledger
    GROUP BY at_ms / 86400000, team, subject, client_id, model, provider, deployment,
             upstream_model, price_source, price_input, price_output, price_cached_input,
             price_cache_write, price_reasoning, cache
    """
)
_d = usage_daily.c
ROLLUP_SUMS = sa.select(
    _d.day,
    _d.team,
    _d.subject,
    _d.client_id,
    _d.model,
    _d.provider,
    _d.deployment,
    _d.upstream_model,
    _d.price_source,
    _d.price_input,
    _d.price_output,
    _d.price_cached_input,
    _d.price_cache_write,
    _d.price_reasoning,
    _d.cache,
    _d.requests,
    _d.errors,
    _d.input_tokens,
    _d.output_tokens,
    _d.cached_tokens,
    _d.cache_write_tokens,
    _d.reasoning_tokens,
    _d.cost_nanousd,
)


def _plain(row: sa.Row) -> tuple[object, ...]:
    return tuple(int(v) if isinstance(v, Decimal) else v for v in row)


async def ledger_and_rollup(engine: AsyncEngine) -> tuple[set[tuple], set[tuple]]:
    async with engine.connect() as conn:
        ledger = {_plain(r) for r in await conn.execute(LEDGER_SUMS)}
        rollup = {_plain(r) for r in await conn.execute(ROLLUP_SUMS)}
    return ledger, rollup


async def rollup_rows(engine: AsyncEngine) -> list[dict]:
    async with engine.connect() as conn:
        found = await conn.execute(sa.select(usage_daily).order_by(_d.day, _d.group_key))
        return [dict(r._mapping) for r in found]


def varied_rows(count: int = 80, start: int = 0) -> list[dict]:
    """Rows over several days and keys: NULL keys, float-hostile prices, clamped token
    kinds (more cached than input), estimated tokens, errors, response-cache statuses."""
    rows = []
    for n in range(start, start + count):
        rows.append(
            priced_row(
                TENTHS if n % 2 else ODD,
                team=("search", "ads", None, "")[n % 4],
                model=("small", "large", None)[n % 3],
                subject=f"user-{n % 3}",
                client_id=(None, "client-1")[n % 2],
                at_ms=at_ms(2026, 1, 1 + n % 5, n % 24),
                input_tokens=n * 7 % 50,
                output_tokens=n * 3 % 40,
                cached_tokens=n % 60,  # sometimes more than the input: clamped
                cache_write_tokens=n % 9,
                reasoning_tokens=n % 45,
                status=(200, 200, 429, 200, 502)[n % 5],
                tokens_estimated=n % 6 == 0,
                cache=(None, "hit", "miss", "bypass", None, "miss", "hit")[n % 7],
            )
        )
    return rows


async def test_the_rollup_equals_the_ledger_sums(engine):
    """Per day and key, the rollup's counts, token sums and cost are the ledger's own sums."""
    rows = varied_rows()
    assert await insert_rows(engine, rows[:50]) == 50
    assert await insert_rows(engine, rows[50:]) == 30
    ledger, rollup = await ledger_and_rollup(engine)
    assert rollup == ledger
    assert sum(r[15] for r in rollup) == 80


async def test_a_duplicate_batch_does_not_double_the_rollup(engine):
    """The same batch twice, a batch overlapping one already stored, and a batch with
    one id twice: each row counts once (only what the ledger insert added)."""
    rows = varied_rows(40)
    assert await insert_rows(engine, rows) == 40
    before = await rollup_rows(engine)
    assert await insert_rows(engine, rows) == 0
    assert await rollup_rows(engine) == before
    more = varied_rows(20, start=40)
    assert await insert_rows(engine, rows[::3] + more) == 20
    # One id twice in a batch, the second copy different: the first one is the row.
    twin = priced_row(TENTHS, input_tokens=5, at_ms=at_ms(2026, 1, 9))
    changed = {**twin, "input_tokens": 500, "cost_nanousd": twin["cost_nanousd"] * 100}
    assert await insert_rows(engine, [twin, changed]) == 1
    ledger, rollup = await ledger_and_rollup(engine)
    assert rollup == ledger
    assert sum(r[15] for r in rollup) == 61
    day9 = [r for r in await rollup_rows(engine) if r["day"] == twin["at_ms"] // 86_400_000]
    assert [(r["requests"], r["input_tokens"]) for r in day9] == [(1, 5)]


async def test_concurrent_writers_with_overlapping_batches_count_each_row_once(engines):
    """Two replicas store overlapping batches at the same time (same keys, same ids in
    another order): every row is in the ledger once and in the rollup once."""
    first, second = engines
    rows = varied_rows(120)
    batches_a = [rows[i : i + 30] for i in range(0, 120, 30)]
    batches_b = [list(reversed(rows[i : i + 40])) for i in range(0, 120, 40)]

    async def write(engine: AsyncEngine, batches: list[list[dict]]) -> int:
        return sum([await insert_rows(engine, batch) for batch in batches])

    added = await asyncio.gather(write(first, batches_a), write(second, batches_b))
    assert sum(added) == 120
    ledger, rollup = await ledger_and_rollup(first)
    assert rollup == ledger


def finished(i: int) -> RequestContext:
    ctx = RequestContext(request_id=f"req-{i}", endpoint="chat")
    ctx.principal = Principal("demo", "alice", "app", frozenset(), "iss", 0.0)
    ctx.model = "m"
    return ctx


async def test_a_replayed_spool_does_not_double_the_rollup(engine, database_url, tmp_path):
    """A spool left by a dead process holds rows that did commit (its batch timed out
    after the commit) and rows that did not, one of them twice: replayed, each counts once."""
    committed = [request_row(finished(i), 0.01) for i in range(10)]
    assert await insert_rows(engine, committed) == 10
    pending = [request_row(finished(i), 0.01) for i in range(10, 25)]
    spool = tmp_path / "spool"
    spool.mkdir()
    orphan = spool / "ledger-1-dead.jsonl"
    orphan.write_bytes(encode_rows([*committed, *pending, pending[0]]))
    writer = LedgerWriter(database_url, spool, batch_rows=7, batch_interval_s=0.01)
    await writer.start()
    for _ in range(400):
        if not orphan.exists():
            break
        await asyncio.sleep(0.05)
    await writer.close()
    assert not orphan.exists()
    ledger, rollup = await ledger_and_rollup(engine)
    assert rollup == ledger
    assert sum(r[15] for r in rollup) == 25


async def report_totals(engine: AsyncEngine, format: str) -> bytes:
    request = parse_report_request("2026-01", format, "team,model,day", NOW)
    return (await usage_report(engine, request)).body


async def test_reports_written_through_the_writer_total_the_ledger_sum(
    engine, database_url, tmp_path
):
    """Rows recorded by the ledger writer: the report's total is SUM(cost) over the ledger."""
    writer = LedgerWriter(database_url, tmp_path / "spool", batch_rows=16, batch_interval_s=0.01)
    await writer.start()
    for i in range(50):
        ctx = finished(i)
        ctx.started_at_ms = at_ms(2026, 1, 1 + i % 28)
        writer.record(ctx)
    await writer.close()
    async with engine.connect() as conn:
        expected = await conn.scalar(sa.text("SELECT SUM(cost_nanousd) FROM usage_ledger"))
        count = await conn.scalar(sa.text("SELECT COUNT(*) FROM usage_ledger"))
    assert count == 50
    document = json.loads(await report_totals(engine, "json"))
    assert document["totals"]["requests"] == 50
    assert document["totals"]["cost_usd"] == usd_text(int(expected))


async def test_the_migration_fills_the_rollup_from_an_existing_ledger(database_url):
    """A database at 0005 with ledger rows, upgraded: the rollup is what the writer would
    have built (every column, the priced token split included), reports are unchanged,
    and rows written afterwards add to the backfilled keys."""
    rows = varied_rows(90)
    rows.append(
        ledger_row(team=None, model=None, provider=None, deployment=None, status=401)
    )  # a refusal: every nullable key NULL
    await asyncio.to_thread(command.upgrade, alembic_config(database_url), "0005")
    engine = create_engine(database_url)
    try:
        await insert_ledger_only(engine, rows)
        await migrate(database_url)
        backfilled = await rollup_rows(engine)
        ledger, rollup = await ledger_and_rollup(engine)
        assert rollup == ledger
        reports = [await report_totals(engine, f) for f in ("csv", "json", "focus")]

        # The same rows stored by the writer's path into an empty database's rollup.
        async with engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM usage_ledger"))
            await conn.execute(usage_daily.delete())
        await insert_rows(engine, rows)
        assert await rollup_rows(engine) == backfilled
        assert [await report_totals(engine, f) for f in ("csv", "json", "focus")] == reports

        # New rows on backfilled keys update those rollup rows, not new ones.
        async with engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM usage_ledger"))
            await conn.execute(usage_daily.delete())
        await insert_ledger_only(engine, rows)
        async with engine.begin() as conn:
            await conn.run_sync(rebuild_rollup)
        again = [{**row, "id": f"again-{row['id']}"} for row in rows]
        assert await insert_rows(engine, again) == len(rows)
        doubled = await rollup_rows(engine)
        assert len(doubled) == len(backfilled)
        assert [r["requests"] for r in doubled] == [2 * r["requests"] for r in backfilled]
        ledger, rollup = await ledger_and_rollup(engine)
        assert rollup == ledger
    finally:
        await engine.dispose()
