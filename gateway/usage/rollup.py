"""The daily rollup (`usage_daily`): ledger rows added up per UTC day and report key.

Owns how one ledger row counts in the rollup (`daily_rows`, pure), storing a batch
of ledger rows together with their rollup (`store_rows`), and filling the rollup
from rows already in the ledger (`rebuild_rollup`, run by migration 0006).

Exactly once: `store_rows` inserts the batch with ON CONFLICT (id) DO NOTHING
RETURNING id and adds to the rollup only the rows that insert returned, in the
same transaction (SQLite first tries the insert without RETURNING, under a
savepoint: if it added a row for every id, all are new; else it is rolled back
and done with RETURNING). The statements are driver SQL (ledger_sql.py). A
replayed or duplicate row inserts nothing and adds nothing; a transaction that
fails adds neither. Ledger rows are inserted in id order and rollup rows upserted
in key order, so two writers touching the same ids or keys lock them in the same
order (no deadlock).

The token kinds are split per row exactly as `pricing.cost_nanousd` prices them:
cached and cache-written tokens are part of the input, reasoning tokens part of
the output, each clamped so no token is priced twice. Clamping is per row (a sum
of minima is not the minimum of sums), which is why the rollup stores the split
sums (`priced_*`) next to the raw ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.usage.ledger_sql import (
    POSTGRES_DAILY_UPSERT,
    POSTGRES_LEDGER_INSERT,
    SQLITE_DAILY_UPSERT,
    SQLITE_LEDGER_INSERT,
    daily_values,
    ledger_values,
    sqlite_chunks,
)
from gateway.usage.ledger_table import ROLLUP_KEYS, ROLLUP_SUMS, usage_daily, usage_ledger
from gateway.usage.report_request import MS_PER_DAY

Row = dict[str, Any]

KINDS = ("input", "cached_input", "cache_write", "output", "reasoning")  # = TokenKind values


def token_split(
    input_tokens: int, output_tokens: int, cached: int, cache_write: int, reasoning: int
) -> tuple[int, int, int, int, int]:
    """One row's tokens by kind as priced: (input, cached_input, cache_write, output,
    reasoning), the input ones adding up to `input_tokens`, the output ones to
    `output_tokens`."""
    cached = min(cached, input_tokens)
    written = min(cache_write, input_tokens - cached)
    thought = min(reasoning, output_tokens)
    return input_tokens - cached - written, cached, written, output_tokens - thought, thought


def group_key(values: Sequence[Any]) -> str:
    """The digest that stands for a key (ROLLUP_KEYS' values, None included)."""
    return hashlib.blake2b(orjson.dumps(list(values)), digest_size=16).hexdigest()


_key_values = itemgetter(*ROLLUP_KEYS)
_NOT_ESTIMATED = (0, 0, 0, 0, 0)


def daily_rows(rows: Iterable[Row]) -> list[Row]:
    """The rollup rows that count `rows` (ledger rows), sorted by (day, group_key)."""
    # Each row's counts (one tuple in ROLLUP_SUMS order), added up per key column by
    # column at the end: the ledger writer runs this for every row it stores.
    groups: dict[tuple[Any, ...], list[tuple[int, ...]]] = {}
    for row in rows:
        key = (row["at_ms"] // MS_PER_DAY, *_key_values(row))
        inp, out = row["input_tokens"], row["output_tokens"]
        cached, written, reasoning = (
            row["cached_tokens"],
            row["cache_write_tokens"],
            row["reasoning_tokens"],
        )
        split = token_split(inp, out, cached, written, reasoning)
        counts = (
            1,
            row["status"] >= 400,
            inp > 0 or out > 0,
            inp,
            out,
            cached,
            written,
            reasoning,
            *split,
            *(split if row["tokens_estimated"] else _NOT_ESTIMATED),
            row["cost_nanousd"],
        )
        counted = groups.get(key)
        if counted is None:
            groups[key] = [counts]
        else:
            counted.append(counts)
    found = []
    for key, counted in groups.items():
        daily: Row = {"day": key[0], "group_key": group_key(key[1:])}
        daily.update(zip(ROLLUP_KEYS, key[1:], strict=True))
        daily.update(zip(ROLLUP_SUMS, map(sum, zip(*counted, strict=True)), strict=True))
        found.append(daily)
    found.sort(key=lambda daily: (daily["day"], daily["group_key"]))
    return found


def first_of_each_id(rows: Sequence[Row], inserted: Iterable[str]) -> list[Row]:
    """The rows an insert added, given the ids it returned: a batch that carries one id
    twice had only its first copy inserted (ON CONFLICT skips the second)."""
    left = set(inserted)
    added = []
    for row in rows:
        if row["id"] in left:
            left.discard(row["id"])
            added.append(row)
    return added


def _by_id(row: Row) -> str:
    return str(row["id"])


async def store_rows(conn: AsyncConnection, rows: Sequence[Row]) -> int:
    """Insert ledger rows (idempotently) and add the new ones to the rollup, in the
    caller's transaction; how many rows were new.

    Inserted in id order (stable: a repeated id keeps its first copy first), so two
    writers holding some of the same ids never wait on each other crosswise."""
    rows = sorted(rows, key=_by_id)
    if conn.dialect.name == "postgresql":
        result = await conn.exec_driver_sql(POSTGRES_LEDGER_INSERT, (_json(rows),))
        inserted: Iterable[str] = result.scalars().all()
    else:
        inserted = await _insert_sqlite(conn, rows)
    added = first_of_each_id(rows, inserted)
    await add_to_daily(conn, daily_rows(added))
    return len(added)


_SAVEPOINT = "ledger_rows"


async def _insert_sqlite(conn: AsyncConnection, rows: Sequence[Row]) -> Iterable[str]:
    """The ids the insert added. First one prepared statement run per row (SQLite
    prepares a multi-row VALUES anew for every batch size: as much CPU again as the
    insert); when it added fewer rows than the batch has ids (a replay), that is
    undone and the batch inserted again with RETURNING, which tells which ones."""
    ids = {row["id"] for row in rows}
    await conn.exec_driver_sql(f"SAVEPOINT {_SAVEPOINT}")
    result = await conn.exec_driver_sql(SQLITE_LEDGER_INSERT, list(map(ledger_values, rows)))
    if result.rowcount == len(ids):  # each distinct id added one row: all of them are new
        await conn.exec_driver_sql(f"RELEASE {_SAVEPOINT}")
        return ids
    await conn.exec_driver_sql(f"ROLLBACK TO {_SAVEPOINT}")
    await conn.exec_driver_sql(f"RELEASE {_SAVEPOINT}")
    inserted: list[str] = []
    for statement, flat in sqlite_chunks(rows):
        returned = await conn.exec_driver_sql(statement, flat)
        inserted.extend(returned.scalars().all())
    return inserted


async def add_to_daily(conn: AsyncConnection, daily: Sequence[Row]) -> None:
    """Add rollup rows (distinct keys) to `usage_daily`, in the caller's transaction."""
    if not daily:
        return
    if conn.dialect.name == "postgresql":
        # One JSON array, as the ledger insert (a batch's rollup rows have distinct
        # keys, so no row is updated twice in one statement).
        await conn.exec_driver_sql(POSTGRES_DAILY_UPSERT, (_json(daily),))
    else:
        await conn.exec_driver_sql(SQLITE_DAILY_UPSERT, list(map(daily_values, daily)))


def _json(rows: Sequence[Row]) -> str:
    return orjson.dumps(rows).decode()


# --- rebuilding from the ledger ------------------------------------------------------

_t = usage_ledger.c


def _least(a: Any, b: Any) -> Any:
    """min(a, b) on both databases (SQLite's two-argument min is PostgreSQL's LEAST)."""
    return sa.case((a < b, a), else_=b)


_CACHED = _least(_t.cached_tokens, _t.input_tokens)
_WRITTEN = _least(_t.cache_write_tokens, _t.input_tokens - _CACHED)
_REASONING = _least(_t.reasoning_tokens, _t.output_tokens)
_SPLIT = (
    _t.input_tokens - _CACHED - _WRITTEN,
    _CACHED,
    _WRITTEN,
    _t.output_tokens - _REASONING,
    _REASONING,
)


def _flag(condition: Any) -> Any:
    return sa.case((condition, 1), else_=0)


_SUMS_SQL = (
    sa.func.count(),
    sa.func.sum(_flag(_t.status >= 400)),
    sa.func.sum(_flag(sa.or_(_t.input_tokens > 0, _t.output_tokens > 0))),
    sa.func.sum(_t.input_tokens),
    sa.func.sum(_t.output_tokens),
    sa.func.sum(_t.cached_tokens),
    sa.func.sum(_t.cache_write_tokens),
    sa.func.sum(_t.reasoning_tokens),
    *(sa.func.sum(expression) for expression in _SPLIT),
    *(sa.func.sum(sa.case((_t.tokens_estimated, e), else_=0)) for e in _SPLIT),
    sa.func.sum(_t.cost_nanousd),
)
assert len(_SUMS_SQL) == len(ROLLUP_SUMS)


def ledger_day_rollup(
    start_ms: int, end_ms: int, key_names: Sequence[str] = ROLLUP_KEYS
) -> sa.Select[Any]:
    """The rollup of the ledger rows in [start_ms, end_ms), computed by the database."""
    keys = [_t[name] for name in key_names]
    return (
        sa.select(*keys, *_SUMS_SQL).where(_t.at_ms >= start_ms, _t.at_ms < end_ms).group_by(*keys)
    )


def rollup_from_sums(
    day: int, values: Sequence[Any], key_names: Sequence[str] = ROLLUP_KEYS
) -> Row:
    """A rollup row from a `ledger_day_rollup` result row (the key's values, then the sums)."""
    width = len(key_names)
    row: Row = {"day": day, "group_key": group_key(values[:width])}
    row.update(zip(key_names, values[:width], strict=True))
    row.update(zip(ROLLUP_SUMS, (int(v or 0) for v in values[width:]), strict=True))
    return row


def rebuild_rollup(conn: Connection, key_names: Sequence[str] = ROLLUP_KEYS) -> int:
    """Replace the rollup with the ledger's sums, one UTC day at a time (bounded memory);
    how many rollup rows it wrote. Run where no writer adds rows (a migration).

    `key_names`: the rollup's key columns as the migration running it left the table
    (an older migration passes the keys of its time; a later one adds a key and
    rebuilds with it)."""
    conn.execute(usage_daily.delete())
    first, last = conn.execute(sa.select(sa.func.min(_t.at_ms), sa.func.max(_t.at_ms))).one()
    if first is None:
        return 0
    written = 0
    for day in range(first // MS_PER_DAY, last // MS_PER_DAY + 1):
        span = (day * MS_PER_DAY, (day + 1) * MS_PER_DAY)
        found = conn.execute(ledger_day_rollup(*span, key_names))
        daily = [rollup_from_sums(day, values, key_names) for values in found]
        if daily:
            conn.execute(usage_daily.insert(), daily)
            written += len(daily)
    return written
