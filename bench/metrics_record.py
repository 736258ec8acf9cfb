"""What the Prometheus recorder costs per finished request: `Metrics.record(ctx)`.

    PYTHONPATH=$PWD .venv/bin/python bench/metrics_record.py [--calls 200000] [--rounds 5]

A typical answered JSON chat request (known team and model, one attempt, usage,
price; no time to first token), recorded `--calls` times per round; process CPU per
call, median of `--rounds`, in this process's own single-process mode and under
`gateway serve --workers N`'s multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before
prometheus-client is imported: a child process), where every update writes the
worker's mmap'd file.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def measure(calls: int, rounds: int) -> list[float]:
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
        for _ in range(calls):
            record(ctx)
        per_call.append((time.process_time() - cpu) / calls * 1e6)
    return per_call


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
    print(f"record(ctx), multiprocess:   {multi:.2f} µs CPU per call (median of rounds)")


if __name__ == "__main__":
    main()
