"""A user's budget rebuilt from the ledger finds that user's rows, whatever the subject:
the ledger stores a subject past 256 characters cut, ending in a digest of the whole
(usage/ledger.py), and the rebuild must ask for it the same way. Real SQLite and
PostgreSQL (the `engine` fixture)."""

from __future__ import annotations

from gateway.auth.principal import Principal
from gateway.context import RequestContext
from gateway.limits.rebuild import ledger_reader
from gateway.usage.ledger import ledger_row
from gateway.usage.rollup import store_rows
from gateway.usage.usage import Usage

LONG = "user-" + "u" * 300  # past the ledger's 256 characters


def finished(subject: str, request_id: str, tokens: int) -> RequestContext:
    ctx = RequestContext(request_id=request_id, endpoint="chat")
    ctx.principal = Principal("subjects", subject, "app", frozenset(), "iss", 0.0)
    ctx.model = "m"
    ctx.usage = Usage(input_tokens=tokens, output_tokens=0)
    return ctx


async def test_a_long_subjects_rows_count_for_that_user_only(engine) -> None:
    rows = [
        ledger_row(finished(LONG + "-one", "r1", 30), 0.01),
        ledger_row(finished(LONG + "-one", "r2", 12), 0.01),
        ledger_row(finished(LONG + "-two", "r3", 500), 0.01),  # same first 256 characters
    ]
    async with engine.begin() as conn:
        await store_rows(conn, rows)
    start, end = rows[0]["at_ms"] - 1000, rows[-1]["at_ms"] + 1000
    sums = ledger_reader(engine)
    assert (await sums("subjects", LONG + "-one", start, end))[0] == 42
    assert (await sums("subjects", LONG + "-two", start, end))[0] == 500
    assert (await sums("subjects", None, start, end))[0] == 542
