"""Usage reports read from a real ledger table, on SQLite and PostgreSQL."""

import csv
import io
import json
from collections import Counter
from decimal import Decimal

import pytest
import sqlalchemy as sa

from gateway.usage.ledger_table import usage_daily, usage_ledger
from gateway.usage.pricing import PriceSource, usd_text
from gateway.usage.report_request import parse_report_request
from gateway.usage.reports import usage_report
from tests.support.ledger_rows import at_ms, insert_rows, ledger_row, priced_row, prices

NOW = at_ms(2026, 3, 1)
# 0.1, 0.2 and 0.7 USD per million tokens: 0.1 + 0.2 != 0.3 in binary floating point.
TENTHS = prices(100_000_000, 200_000_000, cached_input=700_000_000)
ODD = prices(100_000_001, 300_000_003, reasoning=123_456_789)


async def report(engine, format="json", group_by=None, month="2026-01"):
    return await usage_report(engine, parse_report_request(month, format, group_by, NOW))


async def ledger_sum(engine, start, end):
    async with engine.connect() as conn:
        total = await conn.scalar(
            sa.select(sa.func.sum(usage_ledger.c.cost_nanousd)).where(
                usage_ledger.c.at_ms >= start, usage_ledger.c.at_ms < end
            )
        )
    return int(total)


def month_rows():
    """A January with float-hostile prices, errors, an unpriced model, and rows just outside."""
    rows = []
    for n in range(60):
        rows.append(
            priced_row(
                TENTHS if n % 2 else ODD,
                team=("search", "ads", None)[n % 3],
                model=("small", "large")[n % 2],
                subject=f"user-{n % 4}",
                client_id=f"client-{n % 2}",
                provider=("openai", "azure")[n % 2],
                at_ms=at_ms(2026, 1, 1 + n % 31, n % 24),
                input_tokens=1 + n * 7,
                output_tokens=n * 3,
                cached_tokens=n % 5,
                reasoning_tokens=n % 7,
                status=(200, 200, 429, 200, 502)[n % 5],
                tokens_estimated=n % 6 == 0,
            )
        )
    rows.append(
        ledger_row(
            team="ads",
            model="mystery",
            deployment="vllm/mystery",
            price_source="unknown",
            input_tokens=40,
            output_tokens=2,
        )
    )
    rows.append(
        ledger_row(
            team=None,
            model=None,
            provider=None,
            deployment=None,
            upstream_model=None,
            status=401,
            price_source="unknown",
        )
    )
    # The month's first and last millisecond are in it; the next month's first is not.
    rows.append(priced_row(TENTHS, team="edge", at_ms=at_ms(2026, 1, 1, 0), input_tokens=3))
    rows.append(priced_row(TENTHS, team="edge", at_ms=at_ms(2026, 2, 1, 0) - 1, input_tokens=5))
    rows.append(priced_row(TENTHS, team="edge", at_ms=at_ms(2026, 2, 1, 0), input_tokens=1000))
    rows.append(priced_row(TENTHS, team="edge", at_ms=at_ms(2026, 1, 1, 0) - 1, input_tokens=1000))
    return rows


def in_january(rows):
    return [r for r in rows if at_ms(2026, 1, 1, 0) <= r["at_ms"] < at_ms(2026, 2, 1, 0)]


async def test_totals_equal_the_ledger_sum_exactly(engine):
    """JSON, CSV and FOCUS totals all equal SELECT SUM(cost_nanousd) for the month, to the nano-USD."""
    rows = month_rows()
    await insert_rows(engine, rows)
    expected = await ledger_sum(engine, at_ms(2026, 1, 1, 0), at_ms(2026, 2, 1, 0))
    assert expected == sum(r["cost_nanousd"] for r in in_january(rows))
    document = json.loads((await report(engine, "json")).body)
    assert document["totals"]["cost_usd"] == usd_text(expected)
    assert sum(Decimal(r["cost_usd"]) for r in document["rows"]) == Decimal(usd_text(expected))
    assert document["totals"]["requests"] == len(in_january(rows))
    table = list(csv.DictReader(io.StringIO((await report(engine, "csv")).body.decode())))
    assert sum(Decimal(r["cost_usd"]) for r in table) == Decimal(usd_text(expected))
    focus = list(csv.DictReader(io.StringIO((await report(engine, "focus")).body.decode())))
    for column in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
        assert sum(Decimal(r[column]) for r in focus) == Decimal(usd_text(expected))
    assert sum(int(r["x_RequestCount"]) for r in focus) == len(in_january(rows))


@pytest.mark.parametrize(
    "group_by",
    [
        "team,model",
        "team",
        "model,team",
        "provider",
        "subject",
        "day",
        "team,model,provider,subject,day",
        "client_id,team",
        "",
    ],
)
async def test_group_by_combinations_match_the_rows(engine, group_by):
    """Every group's requests, errors, tokens and cost are its rows' sums; the groups partition the month."""
    rows = month_rows()
    await insert_rows(engine, rows)
    document = json.loads((await report(engine, "json", group_by)).body)
    keys = [k for k in group_by.split(",") if k]
    column = {
        "day": lambda r: f"2026-01-{(r['at_ms'] - at_ms(2026, 1, 1, 0)) // 86_400_000 + 1:02d}"
    }

    def key_of(r):
        return tuple(column[k](r) if k in column else r[k] for k in keys)

    expected = {}
    for r in in_january(rows):
        sums = expected.setdefault(key_of(r), Counter())
        sums.update(
            requests=1,
            errors=int(r["status"] >= 400),
            input_tokens=r["input_tokens"],
            output_tokens=r["output_tokens"],
            cached_tokens=r["cached_tokens"],
            cost=r["cost_nanousd"],
        )
    got = {tuple(row[k] for k in keys): row for row in document["rows"]}
    assert set(got) == set(expected)
    for key, sums in expected.items():
        row = got[key]
        assert row["month"] == "2026-01"
        for name in ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens"):
            assert row[name] == sums[name], (key, name)
        assert row["cost_usd"] == usd_text(sums["cost"])
    assert list(document["rows"][0]) == [
        "month",
        *keys,
        "requests",
        "errors",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost_usd",
    ]
    # CSV: one header line, the same columns and values, parsed back.
    table = list(csv.reader(io.StringIO((await report(engine, "csv", group_by)).body.decode())))
    assert table[0] == list(document["rows"][0])
    assert [
        [("" if v is None else str(v)) for v in row.values()] for row in document["rows"]
    ] == table[1:]


async def test_an_unpriced_row_is_counted_at_zero_and_warned_about(engine):
    """A model with no known price: its requests and tokens are in the report at 0 USD and
    the warnings name the model, the deployment and how many rows."""
    await insert_rows(engine, month_rows())
    rendered = await report(engine, "json", "team,model")
    document = json.loads(rendered.body)
    mystery = [r for r in document["rows"] if r["model"] == "mystery"]
    assert [(r["requests"], r["input_tokens"], r["cost_usd"]) for r in mystery] == [
        (1, 40, "0.000000000")
    ]
    assert [
        (w["code"], w["model"], w["deployment"], w["rows"], w["input_tokens"])
        for w in document["warnings"]
    ] == [("unknown_price", "mystery", "vllm/mystery", 1, 40)]
    assert "mystery" in document["warnings"][0]["message"]
    # The 401 with no model is unpriced too but consumed nothing: no warning for it.
    assert len(rendered.warnings) == 1
    focus = list(csv.DictReader(io.StringIO((await report(engine, "focus")).body.decode())))
    unpriced = [
        r
        for r in focus
        if r["x_PriceSource"] == PriceSource.UNKNOWN.value and r["ResourceId"] == "vllm/mystery"
    ]
    assert {r["BilledCost"] for r in unpriced} == {"0.000000000"}
    assert sum(int(r["ConsumedQuantity"]) for r in unpriced) == 42


async def test_a_request_id_sent_twice_is_two_requests(engine):
    """The client's x-request-id may repeat; the gateway's own id keeps both rows."""
    twice = [
        priced_row(TENTHS, request_id="client-retry-1", input_tokens=10, team="search")
        for _ in range(2)
    ]
    await insert_rows(engine, twice)
    document = json.loads((await report(engine, "json", "team")).body)
    assert [(r["team"], r["requests"], r["input_tokens"]) for r in document["rows"]] == [
        ("search", 2, 20)
    ]


async def test_an_empty_month_has_a_header_and_zero_totals(engine):
    document = json.loads((await report(engine, "json", month="2025-12")).body)
    assert document == {
        "month": "2025-12",
        "rows": [],
        "warnings": [],
        "totals": {
            "requests": 0,
            "errors": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cached_tokens": 0,
            "cost_usd": "0.000000000",
        },
    }
    assert (
        (await report(engine, "csv", month="2025-12")).body
        == b"month,team,model,requests,errors,input_tokens,output_tokens,cached_tokens,cost_usd\r\n"
    )


async def test_the_same_ledger_gives_the_same_bytes(engine):
    """Deterministic: rows inserted in another order give byte-identical files."""
    rows = month_rows()
    await insert_rows(engine, rows[::2])
    await insert_rows(engine, rows[1::2])
    first = [(await report(engine, f, "team,model,day")).body for f in ("csv", "json", "focus")]
    async with engine.begin() as conn:
        await conn.execute(usage_ledger.delete())
        await conn.execute(usage_daily.delete())
    await insert_rows(engine, reversed(rows))
    assert [
        (await report(engine, f, "team,model,day")).body for f in ("csv", "json", "focus")
    ] == first
