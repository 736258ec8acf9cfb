"""Where a Redis round trip's CPU goes on this machine: the call, or waking Redis.

One client process, CPU from getrusage, each call awaited before the next:
- PING, and an EVAL whose Lua loop keeps Redis busy about as long as the limits
  RESERVE script does (`INFO commandstats`: ~50 µs a call): what the wait costs;
- the limits stage's RESERVE + SETTLE through RedisBackend (the settle rides along
  with the next reserve, as in the gateway), bench/limits_micro.py's heavy plan;
each back to back, then with `--gap` of sleep between calls (a request at c=1 leaves
Redis idle that long; the sleeps' own cost, measured alone, is subtracted).

    cd bench && PYTHONPATH=.. taskset -c 1 ../.venv/bin/python redis_roundtrip.py \
        [--url redis://127.0.0.1:6379] [--calls 3000] [--gap-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from collections.abc import Awaitable, Callable

import uvloop
from limits_micro import bench_team

from gateway.limits.plan import Actual, Estimate, build_plan
from gateway.limits.redis_backend import RedisBackend

BUSY_LUA = "local x = 0 for i = 1, {n} do x = x + i end return 1"


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def per_call(call: Callable[[int], Awaitable[object]], calls: int, gap_s: float) -> float:
    """CPU µs per call, the sleeps between calls not counted."""
    await call(-1)
    started = cpu_s()
    for i in range(calls):
        await call(i)
        if gap_s:
            await asyncio.sleep(gap_s)
    spent = cpu_s() - started
    if gap_s:
        sleeping = cpu_s()
        for _ in range(calls):
            await asyncio.sleep(gap_s)
        spent -= cpu_s() - sleeping
    return spent / calls * 1e6


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="redis://127.0.0.1:6379")
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--gap-ms", type=float, default=2.0)  # uvloop sleeps whole ms
    p.add_argument("--lua-loop", type=int, default=4000, help="iterations of the busy EVAL")
    a = p.parse_args()
    backend = RedisBackend.from_url(a.url)
    fast = backend._fast  # the limits path's own connection (resp.py)
    assert fast is not None, "a redis:// URL"
    team = bench_team()
    now = int(time.time() * 1000)
    first = build_plan(team, "u", Estimate(100, 1000), now)
    await backend.try_reserve(first, "first", now)
    await backend.seed(team.name, tuple((rule, 0) for rule in first.budgets))
    busy = ("EVAL", BUSY_LUA.format(n=a.lua_loop), 0)

    async def ping(_: int) -> object:
        return await fast.call(("PING",))

    async def eval_busy(_: int) -> object:
        return await fast.call(busy)

    async def reserve_settle(i: int) -> object:
        plan = build_plan(team, "u", Estimate(100, 1000), now)
        hold = await backend.try_reserve(plan, f"{time.monotonic_ns()}-{i}", now)
        backend.settle(hold, Actual(50, 500))
        return hold

    try:
        for gap_ms in (0.0, a.gap_ms):
            for name, call in (
                ("PING", ping),
                (f"EVAL, Lua loop of {a.lua_loop}", eval_busy),
                ("RESERVE + SETTLE", reserve_settle),
            ):
                wall = time.perf_counter()
                cpu = await per_call(call, a.calls, gap_ms / 1000)
                wall_us = (time.perf_counter() - wall) / a.calls * 1e6
                print(f"gap {gap_ms} ms  {name}: {cpu:.1f} µs CPU per call ({wall_us:.0f} µs wall)")
            await backend.flush()
    finally:
        await backend.close()


if __name__ == "__main__":
    uvloop.run(main())
