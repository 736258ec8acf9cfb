"""A concurrency slot is free before its client can see the answer's end, on Redis too:
clients at their team's concurrency limit, each sending its next request the moment it
has the last one, are never refused, however many of them (five at a limit of five) and
whichever replica the next request reaches."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.integration.test_limits_sequential import POLICY as SEQUENTIAL_POLICY
from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

# The sequential tests' policy (a day budget too), with room for `slots` at once.
POLICY = SEQUENTIAL_POLICY.replace("{{concurrency: 1}}", "{{concurrency: {slots}}}")
BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


async def one_after_another(
    replicas: list[tuple[str, str]], count: int, *, stream: bool
) -> list[int]:
    """`count` requests, each sent once the last one's answer was read to its end, to
    the `replicas` (origin, token) in turn (one connection each)."""
    statuses = []
    clients = [httpx.AsyncClient(base_url=origin) for origin, _ in replicas]
    try:
        for i in range(count):
            token = replicas[i % len(replicas)][1]
            response = await clients[i % len(clients)].post(
                "/v1/chat/completions",
                json={**BODY, "stream": stream},
                headers={"authorization": f"Bearer {token}"},
            )  # read whole: the end reached before the next is sent
            statuses.append(response.status_code)
    finally:
        for client in clients:
            await client.aclose()
    return statuses


@pytest.mark.parametrize("stream", [True, False], ids=["streams", "whole answers"])
@pytest.mark.parametrize("backend", ["redis", "in-process"])
async def test_five_clients_at_a_limit_of_five_are_never_refused(
    tmp_path: Path, redis_url: str, backend: str, stream: bool
) -> None:
    team = f"rel-{uuid.uuid4().hex[:8]}"
    settings = {"redis_url": redis_url} if backend == "redis" else {}
    async with MockUpstream("up") as up:
        policy = POLICY.format(base=up.base_url, team=team, slots=5)
        async with running_gateway(tmp_path, policy, **settings) as gw:
            replica = [(gw.origin, await gw.token(team))]
            runs = [one_after_another(replica, 30, stream=stream) for _ in range(5)]
            statuses = [s for run in await asyncio.gather(*runs) for s in run]
    assert statuses == [200] * 150, {s: statuses.count(s) for s in set(statuses)}


@pytest.mark.parametrize("stream", [True, False], ids=["streams", "whole answers"])
async def test_a_client_at_its_limit_moving_between_replicas_is_never_refused(
    tmp_path: Path, redis_url: str, stream: bool
) -> None:
    """Two replicas on one Redis, a limit of one: each request goes to the other replica
    than the last, sent the moment the last one's end arrived."""
    team = f"rel-{uuid.uuid4().hex[:8]}"
    async with MockUpstream("up") as up:
        policy = POLICY.format(base=up.base_url, team=team, slots=1)
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        async with (
            running_gateway(tmp_path / "a", policy, redis_url=redis_url) as a,
            running_gateway(tmp_path / "b", policy, redis_url=redis_url) as b,
        ):
            # Each replica signs its own (its own database): the same team and subject.
            replicas = [(a.origin, await a.token(team)), (b.origin, await b.token(team))]
            statuses = await one_after_another(replicas, 40, stream=stream)
    assert statuses == [200] * 40, {s: statuses.count(s) for s in set(statuses)}
