"""What the Prometheus recorder costs per finished request: `Metrics.record(ctx)`.

    PYTHONPATH=$PWD .venv/bin/python bench/metrics_record.py [--calls 200000] [--rounds 5]

A typical answered JSON chat request (known team and model, one attempt, usage,
price; no time to first token), recorded `--calls` times per round; process CPU per
call, median of `--rounds`, in this process's own single-process mode (counted at once
outside an event loop; on one, in batches as the server does) and under
`gateway serve --workers N`'s multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before
prometheus-client is imported: a child process), where every update writes the
worker's mmap'd file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any


def measure(calls: int, rounds: int, batch: bool = False) -> list[float]:
    from gateway.auth.principal import Principal
    from gateway.context import RequestContext
    from gateway.policy.compiled import Deployment, ModelRoute, Policy
    from gateway.policy.store import PolicyStore
    from gateway.routing.tries import Try
    from gateway.telemetry.metrics import Metrics
    from gateway.usage.pricing import PriceSource, UnitPrices, cost_nanousd
    from gateway.usage.usage import Usage

    prices = UnitPrices(1, 2, 1, 1, 2, PriceSource.POLICY)
    deployment = Deployment("openai", "gpt-4o-mini", 1.0, 1, prices=prices)
    route = ModelRoute("fast", (deployment,), None, None)  # type: ignore[arg-type]  # routing unused here
    policy = Policy(providers={}, models={"fast": route}, teams={"demo": None}, hash="h")  # type: ignore[dict-item]
    metrics = Metrics(PolicyStore(policy, 3))
    ctx = RequestContext(request_id="req_1", endpoint="chat", model="fast")
    ctx.principal = Principal("demo", "alice", None, frozenset(), "iss", 0.0)
    ctx.deployment, ctx.tries = deployment, (Try(deployment, is_answer=True),)
    usage = Usage(812, 231, 128)
    ctx.usage, ctx.prices, ctx.cost_nanousd = usage, prices, cost_nanousd(usage, prices)
    ctx.status = 200
    record = metrics.record
    per_call = []
    for _ in range(rounds):
        cpu = time.process_time()
        if batch:  # as the server's event loop does: BATCH requests at a time
            asyncio.run(_in_batches(metrics, ctx, calls))
        else:
            for _ in range(calls):
                record(ctx)
        per_call.append((time.process_time() - cpu) / calls * 1e6)
    return per_call


# Requests one batch counts at 3,000 requests/s (bench/run.py's JSON c=16) in 50 ms.
BATCH = 150


async def _in_batches(metrics: Any, ctx: Any, calls: int) -> None:
    for done in range(calls):
        metrics.record(ctx)
        if done % BATCH == BATCH - 1:
            metrics._count_waiting()  # what the loop's timer runs
    metrics._count_waiting()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(statistics.median(measure(args.calls, args.rounds)))
        return
    single = statistics.median(measure(args.calls, args.rounds))
    batched = statistics.median(measure(args.calls, args.rounds, batch=True))
    with tempfile.TemporaryDirectory() as shared:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": shared}
        child = [sys.executable, __file__, "--child", "--calls", str(args.calls)]
        found = subprocess.run(
            [*child, "--rounds", str(args.rounds)], env=env, capture_output=True, text=True
        )
        if found.returncode:
            sys.exit(found.stderr)
        multi = float(found.stdout)
    print(f"record(ctx), single process: {single:.2f} µs CPU per call (median of rounds)")
    print(f"  ... on an event loop, {BATCH} per batch: {batched:.2f} µs")
    print(f"record(ctx), multiprocess:   {multi:.2f} µs CPU per call (median of rounds)")


if __name__ == "__main__":
    main()
