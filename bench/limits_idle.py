"""The in-process limits stage's CPU after the core has idled, piece by piece, no HTTP.

At concurrency 1 the gateway's vCPU halts between requests and every request runs with
cold caches and TLBs: the stage costs 4-5x what it costs warm (limits_paired.py). A
2 ms sleep before the stage reproduces that here (evicting the caches by reading 8 MiB,
limits_micro.py's `cold`, does not: it reads ~15 µs where the gateway's own probes read
~40 on the same host), and busy-waiting 1 ms after the sleep does not warm it back: the
cost is the code and data the stage touches first, not a clock ramping up.

Each piece is timed (thread CPU clock) as the first thing after the sleep, the others
run before the sleep or after the reading, so each reads its own cold cost; `whole` is
the pipeline's three calls (reserve_limits, limits_headers, settle_limits) in a row.
`clock` is two clock reads back to back: subtract it from each piece.

    cd bench && PYTHONPATH=.. ../.venv/bin/python limits_idle.py [--rounds 600] [--idle-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import orjson
from limits_micro import ROUTE, STAGE_BODY, stage_fixture

from gateway.limits.answers import ratelimit_headers
from gateway.limits.backend import Hold
from gateway.limits.estimate import estimate_inline
from gateway.limits.memory import MemoryBackend
from gateway.limits.plan import Actual, Plan, lease_ms
from gateway.limits.stage import _shape_now, limits_headers, reserve_limits, settle_limits
from gateway.policy.schema import BackendErrorMode
from gateway.usage.usage import Usage

CLOSED = BackendErrorMode.CLOSED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=600, help="readings per piece")
    parser.add_argument("--idle-ms", type=float, default=2.0, help="sleep before each reading")
    args = parser.parse_args()
    policy, services, grant = stage_fixture(MemoryBackend())
    limits = services.limits

    def context() -> Any:
        return SimpleNamespace(
            endpoint="chat", limits_hold=None, limits_settled=False, usage=None,
            limits_standing_tokens=None, request_id="r", limits_reached=False,
            limits_policy=None, cost_nanousd=0,
        )  # fmt: skip

    asyncio.run(_seed(context(), policy, grant, services))

    def pieces() -> list[tuple[str, Callable[[], object]]]:
        """One request's pieces, in the stage's order, on a body parsed afresh."""
        body = orjson.loads(STAGE_BODY)
        shape, now_ms = _shape_now(policy, grant, services, spends_tokens=True)  # type: ignore[arg-type]
        plan = Plan(shape, 356, 1_234_567, lease_ms(60.0))
        held: list[Hold] = []
        ctx, usage = context(), Usage(200, 100)

        def whole() -> None:
            reserve_limits(ctx, policy, grant, body, services)  # type: ignore[arg-type]
            limits_headers(ctx)
            ctx.usage, ctx.cost_nanousd = usage, 1234
            settle_limits(ctx, services)  # type: ignore[arg-type]

        return [
            ("clock", lambda: None),
            ("estimate", lambda: estimate_inline("chat", body, ROUTE, None)),
            ("shape", lambda: _shape_now(policy, grant, services, spends_tokens=True)),  # type: ignore[arg-type]
            ("reserve", lambda: held.append(limits.reserve_now(plan, CLOSED, now_ms) or _no())),
            ("headers", lambda: ratelimit_headers(held[0].requests, held[0].tokens)),
            ("settle", lambda: limits.settle(held[0], Actual(300, 1234))),
            ("whole", whole),
        ]

    for idle_s in (0.0, args.idle_ms / 1000):
        readings: dict[str, list[int]] = {}
        for i in range(args.rounds * 7):
            steps = pieces()
            timed = i % len(steps)
            for n, (name, step) in enumerate(steps):
                if n != timed:
                    step()
                    continue
                if idle_s:
                    time.sleep(idle_s)
                start = time.thread_time_ns()
                step()
                readings.setdefault(name, []).append(time.thread_time_ns() - start)
        medians = "  ".join(f"{k} {statistics.median(v) / 1e3:.2f}" for k, v in readings.items())
        print(f"idle {idle_s * 1000:g} ms, µs (median): {medians}")


def _no() -> Hold:
    raise RuntimeError("the bench team's reservation was refused")


async def _seed(ctx: Any, policy: Any, grant: Any, services: Any) -> None:
    """The first request: the budgets rebuilt (from no ledger), the encoding loaded."""
    waiting = reserve_limits(ctx, policy, grant, orjson.loads(STAGE_BODY), services)
    if waiting is not None:
        await waiting
    ctx.usage, ctx.cost_nanousd = Usage(200, 100), 1234
    settle_limits(ctx, services)


if __name__ == "__main__":
    main()
