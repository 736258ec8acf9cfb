"""Micro-benchmark of the limits stage alone (plan + reserve + settle), no HTTP.

CPU per request in this process for the in-process backend and for Redis
(redis://127.0.0.1:6379), with a heavy plan: two team budgets, a user budget,
team rpm + tpm, user rpm, team concurrency. Then the stage's other cost, the
estimate (prompt tokens counted with tiktoken, worst-case price), for bench/run.py's
prompt: a prompt seen for the first time, and one seen before; then estimate_inline,
what the stage calls for every request, warm and cold.

`stage` also measures it "cold": with ~8 MiB of memory read between requests (what
the rest of a request does to the caches in a server), less the cost of that reading
alone. The cold number is the one that predicts the stage's cost in a server.

Run (from bench/: bench/profile.py shadows the stdlib's there, so PYTHONPATH must name
the checkout): cd bench && PYTHONPATH=.. ../.venv/bin/python limits_micro.py [stage]
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
import uuid
from types import SimpleNamespace
from typing import Any

import orjson
from run import PROMPT  # bench/run.py's prompt (this script runs from bench/)

from gateway.limits.backend import LimitsBackend
from gateway.limits.estimate import estimate, estimate_inline, estimate_now
from gateway.limits.memory import MemoryBackend
from gateway.limits.plan import Actual, Estimate, build_plan
from gateway.limits.redis_backend import RedisBackend
from gateway.limits.service import Limits
from gateway.limits.stage import limits_headers, reserve_limits, settle_limits
from gateway.policy.compiled import (
    Budget,
    BudgetPeriod,
    Deployment,
    ModelRoute,
    RoutingConfig,
    TeamRules,
)
from gateway.policy.schema import BackendErrorMode, LimitsSpec, PerUserSpec
from gateway.usage.usage import Usage

REQUESTS_IN_PROCESS = 20_000
REQUESTS_REDIS = 3_000
REQUESTS_ESTIMATE = 3_000
REQUESTS_STAGE = 10_000
REQUESTS_COLD = 3_000
REQUESTS_AGENT = 300
# Read between two cold requests: twice the L2 of this bench machine (4 MiB per core),
# one byte per 64-byte cache line (the slice reads every line, copies 128 KiB).
EVICT_BYTES = 8 << 20
CACHE_LINE = 64
ROUTE = ModelRoute(
    "bench-model", (Deployment("upstream", "gpt-4o-mini", 1.0, 1),), RoutingConfig(), None
)


# The body bench_stage sends (and bench_estimate_inline estimates): a system prompt and
# bench/run.py's prompt.
STAGE_BODY = orjson.dumps(
    {
        "model": "bench-model",
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are a careful senior engineer."},
            {"role": "user", "content": PROMPT},
        ],
    }
)
ROUNDS_COLD = 5


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_team() -> TeamRules:
    return TeamRules(
        f"bench-{uuid.uuid4().hex[:6]}",
        True,
        frozenset(),
        budgets=(
            Budget(BudgetPeriod.MONTH, 10**12, None),
            Budget(BudgetPeriod.DAY, None, 10**6),
        ),
        limits=LimitsSpec(rpm=10**8, tpm=10**11, concurrency=10**6),
        per_user=PerUserSpec(rpm=10**8, tokens_per_day=10**12),
    )


async def settle_backlog(backend: LimitsBackend, at_most: int) -> None:
    """Redis settles in the background: let them catch up so they are measured too."""
    flush = getattr(backend, "flush", None)
    queued = len(getattr(backend, "_queue", ()))
    if flush is not None and (queued > at_most or at_most == 0):
        await flush()


async def run(backend: LimitsBackend, requests: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per request."""
    team = bench_team()
    now = int(time.time() * 1000)
    warm = build_plan(team, "u", Estimate(100, 1000), now)
    await backend.try_reserve(warm, "warm", now)
    await backend.seed(team.name, tuple((counter, 0) for counter in warm.budgets))
    cpu0, wall0 = cpu_s(), time.perf_counter()
    for i in range(requests):
        plan = build_plan(team, "u", Estimate(100, 1000), now)
        hold = await backend.try_reserve(plan, str(i), now)
        backend.settle(hold, Actual(50, 500))
        await settle_backlog(backend, 64)
    await settle_backlog(backend, 0)
    return (cpu_s() - cpu0) / requests * 1e6, (time.perf_counter() - wall0) / requests * 1e6


def bench_estimate(prompt: str, *, fresh: bool) -> float:
    """CPU µs per estimate of a chat request with `prompt` (fresh: a new text each time)."""
    bodies = [
        {
            "model": "bench-model",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": f"{i} {prompt}" if fresh else prompt}],
        }
        for i in range(REQUESTS_ESTIMATE)
    ]
    estimate_now("chat", bodies[0], ROUTE, None)  # loads the encoding
    cpu0 = cpu_s()
    for body in bodies:
        estimate_now("chat", body, ROUTE, None)
    return (cpu_s() - cpu0) / REQUESTS_ESTIMATE * 1e6


def bench_estimate_inline(*, cold: bool) -> float:
    """CPU µs per estimate_inline (the stage's call) of STAGE_BODY, seen before, parsed
    afresh each time as in a server. The parse alone (and, cold, `evict` between calls)
    is measured in the same rounds and subtracted; the median of ROUNDS_COLD rounds."""
    memory = bytearray(EVICT_BYTES) if cold else None
    requests = REQUESTS_COLD if cold else REQUESTS_ESTIMATE
    estimate_inline("chat", orjson.loads(STAGE_BODY), ROUTE, None)  # remembers its texts

    def spent(estimating: bool) -> float:
        cpu0 = cpu_s()
        for _ in range(requests):
            if memory is not None:
                evict(memory)
            body = orjson.loads(STAGE_BODY)
            if estimating:
                estimate_inline("chat", body, ROUTE, None)
        return (cpu_s() - cpu0) / requests * 1e6

    rounds = sorted(spent(True) - spent(False) for _ in range(ROUNDS_COLD))
    return rounds[len(rounds) // 2]


# An agent's conversation: a ~30 KB tool output it re-sends every turn.
TOOL_OUTPUT = "".join(
    f"row {i}: status=ok latency_ms={i % 97} region=eu-west-{i % 3}\n" for i in range(600)
)
AGENT_BODY = orjson.dumps(
    {
        "model": "bench-model",
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are an agent."},
            {"role": "user", "content": "Check the fleet."},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "fleet", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": TOOL_OUTPUT},
            {"role": "user", "content": "Summarize."},
        ],
    }
)  # fmt: skip


async def bench_agent_estimate() -> float:
    """CPU µs per estimate (the stage's call: inline, or on a thread) of AGENT_BODY seen
    before, parsed afresh each time."""
    await estimate("chat", orjson.loads(AGENT_BODY), ROUTE, None)
    cpu0 = cpu_s()
    for _ in range(REQUESTS_AGENT):
        await estimate("chat", orjson.loads(AGENT_BODY), ROUTE, None)
    return (cpu_s() - cpu0) / REQUESTS_AGENT * 1e6


async def no_sums(*_: Any) -> tuple[int, int]:
    return 0, 0


def evict(memory: bytearray) -> None:
    """Read one byte of every cache line of `memory`: the caches lose the stage's state."""
    memory[::CACHE_LINE]


def evict_cost(memory: bytearray, requests: int) -> float:
    """CPU µs of one `evict` alone (subtracted from a cold run)."""
    cpu0 = cpu_s()
    for _ in range(requests):
        evict(memory)
    return (cpu_s() - cpu0) / requests * 1e6


def stage_fixture(backend: LimitsBackend) -> tuple[Any, Any, Any]:
    """What the stage reads of a request's policy, services and grant: bench_team() in
    process on `backend`, its user "u", ROUTE."""
    policy = SimpleNamespace(timezone="UTC", on_backend_error=BackendErrorMode.CLOSED)
    # the settle compares the policy a request reserved under with the current one
    services = SimpleNamespace(
        limits=Limits(backend, no_sums),  # type: ignore[arg-type]
        policy=SimpleNamespace(current=lambda: policy),
    )
    grant = SimpleNamespace(team=bench_team(), route=ROUTE, principal=SimpleNamespace(subject="u"))
    return policy, services, grant


async def bench_stage(backend: LimitsBackend, requests: int, *, cold: bool = False) -> float:
    """CPU µs per request of the whole stage as the pipeline calls it: reserve_limits
    (estimate, plan, reserve) on a body parsed afresh, limits_headers, settle_limits.
    `cold`: memory read between requests, its own cost (measured before and after,
    the mean) subtracted."""
    policy, services, grant = stage_fixture(backend)

    async def one() -> None:
        ctx = SimpleNamespace(
            endpoint="chat",
            limits_hold=None,
            limits_settled=False,
            limits_standing_tokens=None,
            usage=None,
            request_id="r",
        )
        waiting = reserve_limits(ctx, policy, grant, orjson.loads(STAGE_BODY), services)  # type: ignore[arg-type]
        if waiting is not None:
            await waiting
        limits_headers(ctx)  # type: ignore[arg-type]
        ctx.usage, ctx.cost_nanousd = Usage(200, 100), 1234
        settle_limits(ctx, services)  # type: ignore[arg-type]
        await settle_backlog(backend, 64)

    await one()  # seeds the budgets, loads the encoding
    memory = bytearray(EVICT_BYTES) if cold else None
    before = 0.0 if memory is None else evict_cost(memory, requests)
    cpu0 = cpu_s()
    for _ in range(requests):
        if memory is not None:
            evict(memory)
        await one()
    await settle_backlog(backend, 0)
    spent = (cpu_s() - cpu0) / requests * 1e6
    if memory is None:
        return spent
    return spent - (before + evict_cost(memory, requests)) / 2


async def whole_stage() -> tuple[float, float, float]:
    """CPU µs per request of the whole stage: in-process warm, in-process cold, Redis."""
    memory = await bench_stage(MemoryBackend(), REQUESTS_STAGE)
    cold = await bench_stage(MemoryBackend(), REQUESTS_COLD, cold=True)
    redis = RedisBackend.from_url("redis://127.0.0.1:6379")
    try:
        remote = await bench_stage(redis, REQUESTS_REDIS)
    finally:
        await redis.close()
    return memory, cold, remote


async def main() -> None:
    if sys.argv[1:] == ["stage"]:  # the whole stage only (to compare two checkouts quickly)
        memory, cold, remote = await whole_stage()
        print(
            f"stage: in-process {memory:.1f} us warm, {cold:.1f} us cold, "
            f"redis {remote:.1f} us CPU/request"
        )
        return
    cpu_us, wall_us = await run(MemoryBackend(), REQUESTS_IN_PROCESS)
    print(f"in-process: {cpu_us:.1f} us CPU/request (plan+reserve+settle), {wall_us:.1f} us wall")
    redis = RedisBackend.from_url("redis://127.0.0.1:6379")
    try:
        cpu_us, wall_us = await run(redis, REQUESTS_REDIS)
    finally:
        await redis.close()
    print(f"redis: {cpu_us:.1f} us CPU/request in the gateway process, {wall_us:.1f} us wall")
    new, seen = bench_estimate(PROMPT, fresh=True), bench_estimate(PROMPT, fresh=False)
    print(f"estimate ({len(PROMPT)}-char prompt): {new:.1f} us new, {seen:.1f} us seen before")
    inline_warm, inline_cold = bench_estimate_inline(cold=False), bench_estimate_inline(cold=True)
    print(
        f"estimate_inline (the stage's call, seen before): {inline_warm:.1f} us warm, "
        f"{inline_cold:.1f} us cold"
    )
    agent = await bench_agent_estimate()
    print(
        f"estimate of an agent's turn ({len(TOOL_OUTPUT)}-char tool output seen before): "
        f"{agent:.0f} us"
    )
    memory, cold, remote = await whole_stage()
    print(
        f"whole stage (estimate of a freshly parsed body, plan, reserve, headers, settle): "
        f"in-process {memory:.1f} us warm, {cold:.1f} us cold, redis {remote:.1f} us CPU/request"
    )


if __name__ == "__main__":
    asyncio.run(main())
