"""The ledger writer's two statements as driver SQL, rendered once per dialect; no I/O.

The writer runs them for every batch of every request's row, so they skip SQLAlchemy's
per-execution work (building and processing bind parameters row by row: ~10 µs a
row, the largest share of the ledger's CPU) and go to the driver as plain strings
through `exec_driver_sql`, with the rows already in the driver's shape:

- SQLite: positional `?` tuples. The insert is one single-row statement run per
  row (executemany: prepared once, where a multi-row VALUES is a new statement for
  every batch size); when the writer must know which ids it added, one multi-row
  VALUES … RETURNING id per chunk (as SQLAlchemy's "insertmanyvalues" sends it).
  The upsert is one executemany.
- PostgreSQL: one JSON array of the rows, unpacked by the server with
  `json_populate_recordset` against the table's own row type (columns matched by
  name, cast to the column's type). asyncpg's array parameters cost ~0.2 µs of
  isinstance checks per value, on the gateway's CPU; orjson costs ~1 µs a row.

Both statements are exactly the ones rollup.py used to build with SQLAlchemy: the same
columns, ON CONFLICT targets and `s = s + excluded.s` updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

from gateway.usage.ledger_table import DAILY_COLUMNS, LEDGER_COLUMNS, ROLLUP_SUMS

# SQLite's default limit on one statement's parameters (SQLITE_MAX_VARIABLE_NUMBER
# since 3.32; SQLAlchemy's insertmanyvalues uses the same): rows per multi-row VALUES.
SQLITE_MAX_PARAMETERS = 32766
SQLITE_INSERT_ROWS = SQLITE_MAX_PARAMETERS // len(LEDGER_COLUMNS)

ledger_values = itemgetter(*LEDGER_COLUMNS)  # a row dict → its values in column order
daily_values = itemgetter(*DAILY_COLUMNS)

_LEDGER_CONFLICT = "ON CONFLICT (id) DO NOTHING RETURNING id"
_DAILY_CONFLICT = "ON CONFLICT (day, group_key) DO UPDATE SET " + ", ".join(
    f"{name} = (usage_daily.{name} + excluded.{name})" for name in ROLLUP_SUMS
)


def _names(columns: Sequence[str]) -> str:
    return ", ".join(columns)


def _placeholders(count: int) -> str:
    return "(" + ", ".join("?" * count) + ")"


@lru_cache(maxsize=64)
def sqlite_ledger_insert(rows: int) -> str:
    """INSERT INTO usage_ledger … VALUES (…), … (`rows` times) ON CONFLICT (id) DO
    NOTHING RETURNING id, for `rows` ≤ SQLITE_INSERT_ROWS rows flattened in column order."""
    one = _placeholders(len(LEDGER_COLUMNS))
    values = ", ".join([one] * rows)
    return f"INSERT INTO usage_ledger ({_names(LEDGER_COLUMNS)}) VALUES {values} {_LEDGER_CONFLICT}"


# One row, no RETURNING: run for every row of a batch (executemany) by one prepared
# statement; rollup.py falls back to `sqlite_ledger_insert` when it must know the ids.
SQLITE_LEDGER_INSERT = (
    f"INSERT INTO usage_ledger ({_names(LEDGER_COLUMNS)}) "
    f"VALUES {_placeholders(len(LEDGER_COLUMNS))} ON CONFLICT (id) DO NOTHING"
)
SQLITE_DAILY_UPSERT = (
    f"INSERT INTO usage_daily ({_names(DAILY_COLUMNS)}) "
    f"VALUES {_placeholders(len(DAILY_COLUMNS))} {_DAILY_CONFLICT}"
)


def _from_json(table: str, columns: Sequence[str]) -> str:
    names = _names(columns)
    return (
        f"INSERT INTO {table} ({names}) "
        f"SELECT {names} FROM json_populate_recordset(NULL::{table}, $1::text::json)"
    )


POSTGRES_LEDGER_INSERT = f"{_from_json('usage_ledger', LEDGER_COLUMNS)} {_LEDGER_CONFLICT}"
POSTGRES_DAILY_UPSERT = f"{_from_json('usage_daily', DAILY_COLUMNS)} {_DAILY_CONFLICT}"


def sqlite_chunks(rows: Sequence[dict[str, Any]]) -> list[tuple[str, tuple[Any, ...]]]:
    """(statement, flat parameters) for each chunk of at most SQLITE_INSERT_ROWS rows."""
    chunks = []
    for start in range(0, len(rows), SQLITE_INSERT_ROWS):
        chunk = rows[start : start + SQLITE_INSERT_ROWS]
        flat: list[Any] = []
        for row in chunk:
            flat.extend(ledger_values(row))
        chunks.append((sqlite_ledger_insert(len(chunk)), tuple(flat)))
    return chunks
