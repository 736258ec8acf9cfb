"""Emptying the response cache: `DELETE /admin/cache` and `gateway cache clear`."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.cache.entry import CachedAnswer, LookupStatus
from gateway.cache.key import CacheKey
from gateway.cache.memory import MemoryCache
from gateway.cache.redis_backend import RedisCache
from gateway.policy.compiled import CachePolicy
from tests.support.admin import ADMIN_POLICY, Admin
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import free_port, run_gateway

POLICY = CachePolicy(ttl_s=60, max_bytes=10_000)
ANSWER = CachedAnswer(b'{"choices":[]}', "demo/mock-small", 1)


def key(team: str, model: str) -> CacheKey:
    return CacheKey(team, model, secrets.token_hex(32))


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ADMIN_POLICY) as gateway:
        yield gateway


@pytest.fixture
async def admin(gw: RunningGateway, http: aiohttp.ClientSession) -> Admin:
    token = await gw.token(team="demo", scopes=["gateway:admin"], subject="alice@example.com")
    return Admin(gw.origin, http, token)


async def test_the_admin_api_clears_a_team_and_model_in_the_running_gateway(
    gw: RunningGateway, admin: Admin
) -> None:
    """Without Redis the running gateway's own memory is what DELETE /admin/cache empties."""
    cache = gw.services.cache
    assert isinstance(cache, MemoryCache)
    keys = {(t, m): key(t, m) for t in ("demo", "search") for m in ("small", "large")}
    for k in keys.values():
        await cache.put(k, ANSWER, POLICY)
    status, body = await admin.call("DELETE", "/admin/cache?team=search&model=small")
    assert (status, body) == (
        200,
        {"object": "cache.cleared", "team": "search", "model": "small", "deleted": 1},
    )
    assert (await cache.get(keys["search", "small"])).status == LookupStatus.MISS
    assert (await cache.get(keys["search", "large"])).status == LookupStatus.HIT
    status, body = await admin.call("DELETE", "/admin/cache?model=large")
    assert (status, body["deleted"]) == (200, 2)
    status, body = await admin.call("DELETE", "/admin/cache")
    assert (status, body["deleted"], body["team"]) == (200, 1, None)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("?teams=search", "teams"),
        ("?team=", "team"),
        ("?team=a&team=b", "team"),
        ("?model=", "model"),
    ],
)
async def test_a_typo_never_empties_every_team(
    gw: RunningGateway, admin: Admin, query: str, param: str
) -> None:
    """An unknown, empty or repeated parameter is a 400, and nothing is removed."""
    cache = gw.services.cache
    kept = key("search", "small")
    await cache.put(kept, ANSWER, POLICY)
    status, body = await admin.call("DELETE", f"/admin/cache{query}")
    assert status == 400 and body["error"]["param"] == param
    assert (await cache.get(kept)).status == LookupStatus.HIT


async def test_clearing_needs_the_admin_scope(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    status, body = await Admin(gw.origin, http, None).call("DELETE", "/admin/cache")
    assert status == 401
    invoker = Admin(gw.origin, http, await gw.token(scopes=["gateway:invoke"]))
    status, body = await invoker.call("DELETE", "/admin/cache")
    assert (status, body["error"]["code"]) == (403, "insufficient_scope")


async def test_redis_down_is_a_503_naming_the_cache(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running_gateway(
        tmp_path, ADMIN_POLICY, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    ) as gateway:
        token = await gateway.token(scopes=["gateway:admin"])
        status, body = await Admin(gateway.origin, http, token).call("DELETE", "/admin/cache")
        headers = {"authorization": f"Bearer {token}"}
        async with http.delete(f"{gateway.origin}/admin/cache", headers=headers) as reply:
            retry_after = reply.headers.get("retry-after")
    assert (status, body["error"]["code"]) == (503, "cache_unavailable")
    assert retry_after == "1"  # retryable, as the other outages' 503s (probe p10)


def test_the_cli_cannot_clear_an_in_process_cache_and_says_where_to(tmp_path: Path) -> None:
    done = run_gateway(
        "cache", "clear", "--team", "search", cwd=tmp_path, env={"GATEWAY_REDIS_URL": ""}
    )
    assert done.returncode == 2
    assert "in-process" in done.stderr and "DELETE /admin/cache" in done.stderr
    assert "nothing was cleared" in done.stderr


async def test_the_cli_clears_redis_by_team_and_model(tmp_path: Path, redis_url: str) -> None:
    team = f"t{secrets.token_hex(6)}"
    cache = RedisCache(redis_url)
    try:
        for model in ("small", "large"):
            await cache.put(key(team, model), ANSWER, POLICY)
        kept = key(team, "large")
        await cache.put(kept, ANSWER, POLICY)
        env = {"GATEWAY_REDIS_URL": redis_url}
        done = run_gateway(
            "cache", "clear", "--team", team, "--model", "small", cwd=tmp_path, env=env
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"cleared 1 cached entry of team {team!r} and model 'small'"
        assert (await cache.get(kept)).status == LookupStatus.HIT
        done = run_gateway("cache", "clear", "--team", team, cwd=tmp_path, env=env)
        assert done.stdout.strip() == f"cleared 2 cached entries of team {team!r}"
    finally:
        await cache.clear(team=team)
        await cache.close()


def test_the_cli_reports_redis_down_plainly(tmp_path: Path) -> None:
    env = {"GATEWAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = run_gateway("cache", "clear", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot clear the response cache: Redis did not answer")
    assert "Traceback" not in done.stderr


async def test_the_cli_reads_a_team_as_a_name_never_a_glob(tmp_path: Path, redis_url: str) -> None:
    """`--team 'PREFIXb*'` clears a team of that exact name (none), not team PREFIXbeta."""
    prefix = f"t{secrets.token_hex(6)}"
    beta = key(f"{prefix}beta", "small")
    cache = RedisCache(redis_url)
    try:
        await cache.put(beta, ANSWER, POLICY)
        for team in (f"{prefix}b*", f"{prefix}b?ta", f"{prefix}[b]eta"):
            done = run_gateway(
                "cache", "clear", "--team", team, cwd=tmp_path, env={"GATEWAY_REDIS_URL": redis_url}
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith("cleared 0 cached entries")
        assert (await cache.get(beta)).status == LookupStatus.HIT
    finally:
        await cache.clear(team=beta.team)
        await cache.close()


async def test_the_admin_api_reads_a_team_as_a_name_never_a_glob(
    tmp_path: Path, redis_url: str, http: aiohttp.ClientSession
) -> None:
    """DELETE /admin/cache?team=PREFIXb* on a Redis-backed gateway leaves PREFIXbeta's entries."""
    prefix = f"t{secrets.token_hex(6)}"
    beta = key(f"{prefix}beta", "small")
    async with running_gateway(tmp_path, ADMIN_POLICY, redis_url=redis_url) as gateway:
        cache = gateway.services.cache
        await cache.put(beta, ANSWER, POLICY)
        try:
            admin = Admin(gateway.origin, http, await gateway.token(scopes=["gateway:admin"]))
            status, body = await admin.call("DELETE", f"/admin/cache?team={prefix}b%2A")
            assert (status, body["team"], body["deleted"]) == (200, f"{prefix}b*", 0)
            assert (await cache.get(beta)).status == LookupStatus.HIT
        finally:
            await cache.clear(team=beta.team)
