"""The ledger writer's driver SQL (gateway/usage/ledger_sql.py): the statements SQLAlchemy
would build, and rows flattened in column order."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from gateway.usage import ledger_sql
from gateway.usage.ledger_table import ROLLUP_SUMS, usage_daily, usage_ledger


def compiled(statement: Any) -> str:
    return str(statement.compile(dialect=sqlite.dialect()))


def test_the_sqlite_insert_is_what_sqlalchemy_renders():
    """One row, no RETURNING (executemany), and n rows with RETURNING id."""
    insert = sqlite.insert(usage_ledger).on_conflict_do_nothing(index_elements=["id"])
    assert compiled(insert) == ledger_sql.SQLITE_LEDGER_INSERT
    row = {name: None for name in ledger_sql.LEDGER_COLUMNS}
    for rows in (1, 3):
        expected = compiled(insert.values([row] * rows).returning(usage_ledger.c.id))
        assert ledger_sql.sqlite_ledger_insert(rows) == expected


def test_the_sqlite_rollup_upsert_is_what_sqlalchemy_renders():
    insert = sqlite.insert(usage_daily)
    upsert = insert.on_conflict_do_update(
        index_elements=["day", "group_key"],
        set_={name: usage_daily.c[name] + insert.excluded[name] for name in ROLLUP_SUMS},
    )
    assert compiled(upsert) == ledger_sql.SQLITE_DAILY_UPSERT


def test_the_postgres_statements_name_every_column_once():
    for statement, table in (
        (ledger_sql.POSTGRES_LEDGER_INSERT, usage_ledger),
        (ledger_sql.POSTGRES_DAILY_UPSERT, usage_daily),
    ):
        names = ", ".join(column.name for column in table.columns)
        assert statement.count(names) == 2  # INSERT INTO t (…) SELECT … FROM the JSON
        assert f"json_populate_recordset(NULL::{table.name}, $1::text::json)" in statement
    assert ledger_sql.POSTGRES_LEDGER_INSERT.endswith("ON CONFLICT (id) DO NOTHING RETURNING id")
    assert "ON CONFLICT (day, group_key) DO UPDATE SET" in ledger_sql.POSTGRES_DAILY_UPSERT


@given(st.integers(0, 2 * ledger_sql.SQLITE_INSERT_ROWS + 3))
def test_chunks_carry_every_row_in_order_within_the_parameter_limit(count):
    rows = [
        {name: f"{n}:{name}" for name in reversed(ledger_sql.LEDGER_COLUMNS)} for n in range(count)
    ]
    chunks = ledger_sql.sqlite_chunks(rows)
    flat = [value for _, values in chunks for value in values]
    assert flat == [row[name] for row in rows for name in ledger_sql.LEDGER_COLUMNS]
    for statement, values in chunks:
        assert statement.count("?") == len(values) <= ledger_sql.SQLITE_MAX_PARAMETERS
