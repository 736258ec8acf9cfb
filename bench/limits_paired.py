"""What the limits stage adds at concurrency 1, request by request (issue 9's target).

limits_insitu.py pairs 4-second wrk runs; at c=1 its pairs spread ±30 µs on this shared
machine, as much as the stage costs. Here one client sends requests one at a time,
alternating the two teams of limits_insitu.py's gateway (`bench` with every kind of
limit, `free` with none) request by request, and reads the gateway's CPU from
/proc/PID/task/*/schedstat (nanoseconds, every thread) before and after each: one
request's CPU, nothing else running in the gateway meanwhile (but its background
tasks: the ledger writer's batches fall on either team alike). The added CPU is the
median of the per-pair differences; the first fifth of the pairs warms up.

    .venv/bin/python bench/limits_paired.py --pairs 3000 [--redis redis://127.0.0.1:6379] \
        [--gateway-env PYTHONPATH=/tmp/tree]

The client is http.client on one keep-alive connection, slower between requests than
wrk: the gateway's caches go colder, and its per-request CPU reads higher than
limits_insitu.py's c=1.
"""

from __future__ import annotations

import glob
import http.client
import os
import statistics
import sys
import tempfile
from pathlib import Path

import measure
from limits_insitu import FREE, LIMITED, parse_args, two_team_gateway
from servers import Processes


def gateway_cpu_ns(pid: int) -> int:
    """CPU of every thread of `pid` so far, in ns (a thread that ended meanwhile drops out:
    the ledger's are long-lived)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def main() -> int:
    cfg, args = parse_args(__doc__.split("\n\n")[0], pairs=True)
    pairs = args.pairs
    os.sched_setaffinity(0, {cfg.load_cpu})
    procs = Processes()
    spent: dict[str, list[int]] = {LIMITED: [], FREE: []}
    with tempfile.TemporaryDirectory(prefix="paired-") as tmp_name:
        try:
            target, tokens, bodies = two_team_gateway(
                cfg, procs, Path(tmp_name), args.limits_bundle
            )
            body = bodies[args.scenario].read_bytes()
            headers = {
                team: {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                for team, token in tokens.items()
            }
            connection = http.client.HTTPConnection("127.0.0.1", target.port)
            for i in range(pairs):
                for team in (LIMITED, FREE) if i % 2 else (FREE, LIMITED):
                    before = gateway_cpu_ns(target.pid)
                    connection.request("POST", measure.CHAT_PATH, body=body, headers=headers[team])
                    answer = connection.getresponse()
                    answer.read()
                    if answer.status != 200:
                        raise RuntimeError(f"{team}: HTTP {answer.status}")
                    spent[team].append(gateway_cpu_ns(target.pid) - before)
        finally:
            procs.stop_all()
    warm = pairs // 5
    limited, free = spent[LIMITED][warm:], spent[FREE][warm:]
    added = [a - b for a, b in zip(limited, free, strict=True)]
    backend = "redis" if args.redis else "in process"
    print(
        f"{args.scenario}, {backend}, c=1, {len(added)} pairs: limits "
        f"{statistics.median(limited) / 1e3:.1f} µs, none {statistics.median(free) / 1e3:.1f} "
        f"µs, added {statistics.median(added) / 1e3:+.1f} µs (median of the pairs' differences)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
