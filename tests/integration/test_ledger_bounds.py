"""The ledger at its bounds, as finance and the callers see it: a row no column can hold
never stops the other rows, token counts past a row's columns are charged as the capped
count (tokens, cost header and budget agree), and long subjects stay apart.

Writers run against real SQLite and PostgreSQL; gateways run in-process on 127.0.0.1
against a mock upstream, rows read from the SQLite file after the gateway stopped.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.principal import Principal
from gateway.context import RequestContext
from gateway.usage.pricing import PriceSource, UnitPrices, usd_text
from gateway.usage.spool import REJECTED_FILE
from gateway.usage.usage import Usage
from gateway.usage.writer import LedgerWriter
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.sqlite_lock import sqlite_write_lock
from tests.support.tcp_proxy import TcpProxy
from tests.support.upstream import Behaviour, MockUpstream

ALICE = Principal("demo", "alice", "app", frozenset(), "iss", 0.0)
# 1e12 USD per Mtok, as nano-USD per Mtok: past a 64-bit column (what no policy may set).
TOO_DEAR = 10**21


def finished(i: int, price: int = 1_000) -> RequestContext:
    ctx = RequestContext(request_id=f"req-{i}", endpoint="chat")
    ctx.principal, ctx.model, ctx.status = ALICE, "m", 200
    ctx.usage = Usage(10, 1)
    ctx.prices = UnitPrices(price, price, price, price, price, PriceSource.POLICY)
    return ctx


async def request_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT request_id FROM usage_ledger"))
        return sorted(request_id for (request_id,) in found)


def rejected_ids(spool_dir: Path) -> list[str]:
    path = spool_dir / REJECTED_FILE
    if not path.exists():
        return []
    return [orjson.loads(line)["request_id"] for line in path.read_bytes().splitlines()]


async def test_a_row_no_column_holds_is_set_aside_and_every_other_row_lands(
    engine, database_url, tmp_path
):
    """One request priced past the ledger's 64-bit columns, in a batch with others: the
    others are in the ledger, it is in rejected.jsonl, and rows after it still land."""
    spool_dir = tmp_path / "spool"
    writer = LedgerWriter(database_url, spool_dir, batch_interval_s=0.05)
    await writer.start()
    try:
        for i in range(5):
            writer.record(finished(i, TOO_DEAR if i == 2 else 1_000))
        assert await writer.caught_up(10.0)
        writer.record(finished(5))
        assert await writer.caught_up(10.0)
    finally:
        await writer.close()
    assert await request_ids(engine) == ["req-0", "req-1", "req-3", "req-4", "req-5"]
    assert rejected_ids(spool_dir) == ["req-2"]


async def test_at_shutdown_with_the_database_away_a_bad_row_does_not_take_the_others(
    engine, database_url, tmp_path
):
    """Closing while the database is away spools every row it can hold (replayed by the
    next start) and sets the one it cannot aside: close returns, nothing is lost."""
    spool_dir = tmp_path / "spool"
    rows = [finished(i, TOO_DEAR if i == 1 else 1_000) for i in range(4)]
    if database_url.startswith("sqlite"):
        writer = LedgerWriter(database_url, spool_dir, batch_interval_s=30)
        await writer.start()
        with sqlite_write_lock(tmp_path / "gateway.db"):
            for ctx in rows:
                writer.record(ctx)
            await writer.close()
    else:
        url = make_url(database_url)
        with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
            writer = LedgerWriter(proxied, spool_dir, batch_interval_s=30)
            await writer.start()
            proxy.cut()
            for ctx in rows:
                writer.record(ctx)
            await writer.close()
    assert rejected_ids(spool_dir) == ["req-1"]
    later = LedgerWriter(database_url, spool_dir, batch_interval_s=0.05)
    await later.start()  # replays the spool the first writer left
    try:
        for _ in range(200):
            if len(await request_ids(engine)) == 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await later.close()
    assert await request_ids(engine) == ["req-0", "req-2", "req-3"]


POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat:
    deployments: [{{provider: up, model: upstream-chat}}]
    price: {{input_per_mtok: 2, output_per_mtok: 8}}
teams:
  demo:
    models: ["*"]
    budgets: [{{period: day, tokens: 9000000000000}}]
"""
CAP = 2**31 - 1


def ledger_rows(tmp_path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM usage_ledger ORDER BY at_ms, rowid")]


async def day_budget(gw: RunningGateway) -> dict[str, Any]:
    admin = await gw.token("demo", scopes=("gateway:admin",))
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{gw.origin}/admin/teams/demo/usage", headers={"authorization": f"Bearer {admin}"}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        view = await response.json()
    (budget,) = view["budgets"]
    return dict(budget)


async def test_a_count_past_the_ledger_columns_is_charged_as_the_capped_count(tmp_path):
    """An upstream reporting 3e9 prompt tokens: the row holds 2**31 - 1, and its cost,
    the cost header and the day's token budget are of that same count."""
    async with MockUpstream(name="up") as up:
        up.behave(Behaviour(prompt_tokens=3_000_000_000, completion_tokens=7))
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            client = await gw.openai()
            raw = await client.chat.completions.with_raw_response.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
            budget = await day_budget(gw)
    # (2**31 - 1) tokens at 2 USD + 7 at 8 USD per Mtok: 4294.96735 USD.
    expected_nanousd = CAP * 2_000 + 7 * 8_000
    assert raw.headers["x-gateway-cost-usd"] == usd_text(expected_nanousd)
    (row,) = ledger_rows(tmp_path)
    assert (row["input_tokens"], row["output_tokens"]) == (CAP, 7)
    assert row["cost_nanousd"] == expected_nanousd
    assert budget["used"] == CAP + 7


async def subject_report(gw: RunningGateway, month: str) -> dict[str, Any]:
    finance = await gw.token("demo", scopes=("gateway:finance",))
    query = f"?month={month}&format=json&group_by=subject"
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{gw.origin}/finance/reports/usage{query}",
            headers={"authorization": f"Bearer {finance}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return dict(await response.json())


async def test_two_users_whose_subjects_share_their_first_256_characters_stay_two(tmp_path):
    """`report usage --group-by subject` keeps them apart: each cut subject ends in a
    digest of the whole, and each user's requests group under one subject."""
    shared = "team-service-account:" + "x" * 250
    async with MockUpstream(name="up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            for name, count in (("alice", 2), ("bob", 1)):
                token = await gw.token("demo", subject=f"{shared}-{name}")
                client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=token, max_retries=0)
                gw.clients.append(client)
                for _ in range(count):
                    await client.chat.completions.create(
                        model="chat", messages=[{"role": "user", "content": "hi"}]
                    )
            month = time.strftime("%Y-%m", time.gmtime())
            for _ in range(200):  # until the writer's batch has landed
                report = await subject_report(gw, month)
                if report["totals"]["requests"] == 3:
                    break
                await asyncio.sleep(0.05)
    assert sorted(row["requests"] for row in report["rows"]) == [1, 2]
    subjects = [row["subject"] for row in report["rows"]]
    assert all(len(subject) == 256 and subject.startswith(shared[:200]) for subject in subjects)
