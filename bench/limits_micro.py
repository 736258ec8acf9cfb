"""Micro-benchmark of the limits stage alone (plan + reserve + settle), no HTTP: CPU per
request for the in-process backend and for Redis (redis://127.0.0.1:6379).
Run: PYTHONPATH=. .venv/bin/python bench/limits_micro.py"""
import asyncio, time, resource, sys, uuid
from gateway.limits.memory import MemoryBackend
from gateway.limits.redis_backend import RedisBackend
from gateway.limits.plan import Actual, Estimate, build_plan
from gateway.limits.estimate import estimate_now
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from gateway.policy.schema import LimitsSpec, PerUserSpec

def cpu(): r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
team = TeamRules(f"bench-{uuid.uuid4().hex[:6]}", True, frozenset(), budgets=(Budget(BudgetPeriod.MONTH, 10**12, None), Budget(BudgetPeriod.DAY, None, 10**6)),
                 limits=LimitsSpec(rpm=10**8, tpm=10**12, concurrency=10**6), per_user=PerUserSpec(rpm=10**8, tokens_per_day=10**12))
N = 20000
async def run(backend, n):
    now = int(time.time()*1000)
    plan = build_plan(team, "u", Estimate(100, 1000), now)
    h = await backend.try_reserve(plan, "x", now)
    await backend.seed(team.name, tuple((c, 0) for c in plan.budgets))
    t0 = cpu(); w0 = time.perf_counter()
    for i in range(n):
        plan = build_plan(team, "u", Estimate(100, 1000), now)
        h = await backend.try_reserve(plan, str(i), now)
        backend.settle(h, Actual(50, 500), now)
        if hasattr(backend, "_pending") and len(backend._pending) > 64:
            await asyncio.wait(list(backend._pending))
    if hasattr(backend, "_pending"): await asyncio.wait(list(backend._pending)) if backend._pending else None
    return (cpu()-t0)/n*1e6, (time.perf_counter()-w0)/n*1e6
async def main():
    m = await run(MemoryBackend(), N); print(f"in-process: {m[0]:.1f} us CPU/request (plan+reserve+settle), {m[1]:.1f} us wall")
    r = RedisBackend.from_url("redis://127.0.0.1:6379"); x = await run(r, 3000); await r.close()
    print(f"redis: {x[0]:.1f} us CPU/request in the gateway process (reserve round trip + settle), {x[1]:.1f} us wall")
asyncio.run(main())
