"""Requests with no verified token cannot grow the ledger without end (probe p26: ~170 GB
a day from one anonymous client): an address's first BURST such refusals are rows, then
PER_MINUTE a minute; each is still answered 401 and on the access log. A verified
caller's refusals are all rows. Real gateway, real HTTP, the ledger read back."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiohttp
import orjson

from gateway.usage.anonymous_rows import BURST, PER_MINUTE
from tests.support.admin import ADMIN_POLICY
from tests.support.gateway import running_gateway

FLOOD = 3 * BURST


async def test_a_flood_without_a_token_stores_a_bounded_number_of_rows(tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    async with running_gateway(tmp_path, ADMIN_POLICY, access_log=str(access_log)) as gw:
        token = await gw.token("demo")
        url = f"{gw.base_url}/chat/completions"
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:

            async def post(headers: dict[str, str]) -> int:
                async with http.post(url, json={}, headers=headers) as reply:
                    return reply.status

            anonymous = await asyncio.gather(*(post({}) for _ in range(FLOOD)))
            forged = await post({"authorization": "Bearer not.a.token"})
            verified = await asyncio.gather(
                *(post({"authorization": f"Bearer {token}"}) for _ in range(BURST * 2))
            )
        elapsed = time.monotonic() - started
    assert set(anonymous) == {401} and forged == 401 and set(verified) == {400}
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        unverified = db.execute("SELECT count(*) FROM usage_ledger WHERE team IS NULL").fetchone()
        teams = db.execute("SELECT count(*) FROM usage_ledger WHERE team = 'demo'").fetchone()
    assert BURST <= unverified[0] <= BURST + 1 + elapsed * PER_MINUTE / 60
    assert teams[0] == BURST * 2  # every verified caller's refusal
    lines = [orjson.loads(line) for line in access_log.read_bytes().splitlines()]
    assert sum(line.get("status") == 401 for line in lines) == FLOOD + 1
