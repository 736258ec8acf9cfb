"""Gateway replicas as real processes for end-to-end tests: a home folder per replica
(its policy), an empty migrated database, the ledger as the database holds it, and
the spool lines a replica has on disk."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import redis.asyncio as aioredis
from sqlalchemy import text

from gateway.auth.access_tokens import mint_with_current_key
from gateway.db import create_engine, migrate
from gateway.limits.redis_backend import team_prefix

# One chat model on one mock upstream; one team with a daily token budget.
BUDGET_POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat: {{deployments: [{{provider: up, model: upstream-chat}}]}}
teams:
  {team}:
    models: ["*"]
    budgets: [{{period: day, tokens: {budget}}}]
"""


async def replica_token(database_url: str, port: int, team: str, subject: str) -> str:
    """An invoke token for the replica serving on `port` (its derived issuer), signed with
    the database's current key: what a team's client would hold."""
    return await mint_with_current_key(
        database_url,
        issuer=f"http://localhost:{port}",
        audience="llm-gateway",
        team=team,
        subject=subject,
        client_id="tests",
        scopes=("gateway:invoke",),
        ttl_s=600,
        now=time.time(),
    )


def replica_home(root: Path, name: str, policy_yaml: str) -> Path:
    """`root/name` with `policies/bundle.yaml`: where `serve_process` runs one replica."""
    home = root / name
    (home / "policies").mkdir(parents=True, exist_ok=True)
    (home / "policies" / "bundle.yaml").write_text(policy_yaml)
    return home


async def empty_postgres(url: str) -> None:
    """The session's PostgreSQL database with nothing in it, migrated (replicas started
    together would serialize on the migration lock; doing it first keeps start-up short)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET lock_timeout = '10s'"))
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()
    await migrate(url)


async def ledger_request_ids(url: str) -> collections.Counter[str]:
    """request id → rows in the usage ledger."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT request_id FROM usage_ledger"))
            return collections.Counter(request_id for (request_id,) in rows)
    finally:
        await engine.dispose()


async def ledger_tokens(url: str, team: str) -> int:
    """Input plus output tokens the ledger holds for `team`: its settled usage."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                text(
                    "SELECT COALESCE(SUM(input_tokens + output_tokens), 0) "
                    "FROM usage_ledger WHERE team = :team"
                ),
                {"team": team},
            )
            return int(found.scalar_one())
    finally:
        await engine.dispose()


def spooled_lines(spool_root: Path) -> int:
    """Rows waiting in spool files anywhere under `spool_root`."""
    return sum(p.read_bytes().count(b"\n") for p in spool_root.rglob("ledger-*.jsonl"))


async def forget_team_keys(redis_url: str, team: str) -> int:
    """Delete every limits key of `team`, as a Redis that restarted empty would; how many."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=team_prefix(team) + "*")]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()
