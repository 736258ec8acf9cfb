"""The response id key every replica shares, against real SQLite and PostgreSQL
(gateway/auth/response_id_key.py), and two `gateway serve` processes on one database
accepting each other's response ids."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from pathlib import Path

import openai
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.access_tokens import mint_with_current_key
from gateway.auth.issuer_record import ServedIssuer, record_served_issuer, served_settings
from gateway.auth.response_id_key import (
    SETTING,
    ResponseIdKeyInvalid,
    load_response_id_key,
)
from gateway.db import create_engine
from gateway.routing.affinity import KEY_BYTES, ResponseIdKey, verify_response_id
from tests.support.replicas import replica_home
from tests.support.serving import ServeProcess, serve_process
from tests.support.upstream import MockUpstream


async def stored_rows(engine: AsyncEngine) -> list[str]:
    query = sa.select(served_settings.c.value).where(served_settings.c.name == SETTING)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


async def test_replicas_starting_together_agree_on_one_key(
    database_url: str, engine: AsyncEngine
) -> None:
    """Four loads racing on an empty database (two engines) return one key, stored once."""
    other = create_engine(database_url)
    made = [bytes([i]) * KEY_BYTES for i in range(1, 5)]  # each racer would store its own
    try:
        results = await asyncio.gather(
            *(load_response_id_key(e, new_secret=made.pop) for e in (engine, other, engine, other)),
            return_exceptions=True,
        )
    finally:
        await other.dispose()
    keys = [r for r in results if isinstance(r, ResponseIdKey)]
    assert keys == results, results
    assert len({key.secret for key in keys}) == 1
    assert len(await stored_rows(engine)) == 1


async def test_a_restart_reads_the_stored_key(database_url: str, engine: AsyncEngine) -> None:
    """A new engine (a restarted process) gets the same key; recording the issuer keeps it."""
    first = await load_response_id_key(engine)
    await record_served_issuer(engine, ServedIssuer("http://gw.example", "llm-gateway"))
    restarted = create_engine(database_url)
    try:
        again = await load_response_id_key(restarted, new_secret=lambda: b"n" * KEY_BYTES)
    finally:
        await restarted.dispose()
    assert again.secret == first.secret and len(first.secret) == KEY_BYTES


@pytest.mark.parametrize("stored", ["not base64!", "c2hvcnQ"])  # garbage; 5 bytes
async def test_an_unreadable_stored_key_stops_the_start_without_showing_it(
    engine: AsyncEngine, stored: str
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            served_settings.insert().values(
                name=SETTING, value=stored, updated_at=sa.func.current_timestamp()
            )
        )
    with pytest.raises(ResponseIdKeyInvalid) as caught:
        await load_response_id_key(engine)
    assert stored not in str(caught.value)
    assert "delete the row" in str(caught.value)


POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m: {{deployments: [{{provider: up, model: upstream-model}}]}}
teams:
  demo: {{models: ["*"]}}
  other: {{models: ["*"]}}
"""


async def test_two_serve_processes_accept_each_others_response_ids(tmp_path: Path) -> None:
    """Two replicas started together on one new database: an id minted by one continues
    on the other, for its team only."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    env = {"GATEWAY_DATABASE_URL": database_url, "GATEWAY_ACCESS_LOG": "off"}
    async with MockUpstream("up") as up:
        policy = POLICY.format(base=up.base_url)
        homes = [replica_home(tmp_path, name, policy) for name in ("r0", "r1")]
        with ExitStack() as first_stack, ExitStack() as second_stack:
            # Started at once: both migrate and look for the key on an empty database.
            replicas: list[ServeProcess] = await asyncio.gather(
                *(
                    asyncio.to_thread(stack.enter_context, serve_process(home, env))
                    for stack, home in zip((first_stack, second_stack), homes, strict=True)
                )
            )

            async def client(team: str, replica: ServeProcess) -> openai.AsyncOpenAI:
                token = await mint_with_current_key(
                    database_url,
                    issuer=f"http://localhost:{replica.port}",
                    audience="llm-gateway",
                    team=team,
                    subject="tester",
                    client_id="tests",
                    scopes=("gateway:invoke",),
                    ttl_s=600,
                    now=time.time(),
                )
                return openai.AsyncOpenAI(
                    base_url=f"{replica.origin}/v1", api_key=token, max_retries=0
                )

            on_first, on_second = (
                await client("demo", replicas[0]),
                await client("demo", replicas[1]),
            )
            intruder = await client("other", replicas[1])
            try:
                first = await on_first.responses.create(model="m", input="hi")
                follow = await on_second.responses.create(
                    model="m", input="more", previous_response_id=first.id
                )
                assert follow.previous_response_id == first.id
                back = await on_first.responses.create(
                    model="m", input="and more", previous_response_id=follow.id
                )
                assert back.previous_response_id == follow.id
                with pytest.raises(openai.NotFoundError) as caught:
                    await intruder.responses.create(
                        model="m", input="hi", previous_response_id=first.id
                    )
                assert caught.value.body["code"] == "previous_response_not_found"
            finally:
                for c in (on_first, on_second, intruder):
                    await c.close()
    # Both replicas minted with the one key the database holds.
    engine = create_engine(database_url)
    try:
        key = await load_response_id_key(engine)
        (stored,) = await stored_rows(engine)
    finally:
        await engine.dispose()
    upstream_ids = [verify_response_id(key, "demo", i) for i in (first.id, follow.id)]
    sent = [r.json.get("previous_response_id") for r in up.requests]
    assert sent == [None, *(m.upstream_id for m in upstream_ids if m is not None)]
    for replica in replicas:
        assert stored not in replica.stderr()  # the key is never logged
