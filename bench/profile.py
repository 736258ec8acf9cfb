"""Where a loaded gateway spends its CPU: py-spy samples the gateway process while wrk
drives one scenario at it, against the same mock upstream as bench/run.py.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile.py --bundle bench/policies/full.yaml \
        --scenario json --concurrency 16 --duration 15 --out /tmp/json.txt

Writes py-spy's `raw` (collapsed stacks) output; `--top N` prints the N functions with
the most samples, self and total, which is usually all one needs. With
`--otlp` the gateway exports traces to bench/otlp_sink.py (started on the load core).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import measure
import run
from servers import Config, Processes, Target, free_port, mock_command, start_gateway

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=str(BENCH_DIR / "policies" / "full.yaml"))
    parser.add_argument("--scenario", choices=("json", "stream"), default="json")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--otlp", action="store_true", help="trace to bench/otlp_sink.py")
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL (py-spy --gil)"
    )
    parser.add_argument(
        "--native",
        action="store_true",
        help="C frames too (py-spy --native; pauses the process)",
    )
    parser.add_argument("--gateway-env", action="append", default=[], metavar="K=V")
    parser.add_argument("--out", default="profile.txt", help="collapsed stacks")
    parser.add_argument("--top", type=int, default=40)
    return parser.parse_args()


def top_functions(collapsed: Path, count: int) -> str:
    """The functions with the most samples: self (innermost frame) and total (anywhere)."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        n = int(samples)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            anywhere[frame] += n
    lines = [f"{total} samples", "", "self %  function"]
    lines += [f"{100 * n / total:5.1f}  {f}" for f, n in own.most_common(count)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / total:5.1f}  {f}" for f, n in anywhere.most_common(count)]
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    if shutil.which("py-spy") is None and not Path(sys.executable).with_name("py-spy").exists():
        print("py-spy is not installed (.venv/bin/pip install py-spy)", file=sys.stderr)
        return 2
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    env = dict(kv.split("=", 1) for kv in args.gateway_env)
    env.setdefault("PYTHONPATH", str(REPO))
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="gateway-profile-") as name:
        tmp = Path(name)
        try:
            if args.otlp:
                sink_port = free_port()
                sink = [sys.executable, str(BENCH_DIR / "otlp_sink.py"), str(sink_port)]
                procs.start(sink, 1, tmp / "sink.log")
                env["GATEWAY_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink_port}"
            cfg = Config(
                python=sys.executable,
                duration_s=args.duration,
                repeat=1,
                warmup_s=2,
                concurrency=[args.concurrency],
                ttft_requests=0,
                event_interval_ms=1,
                stream_usage=True,
                server_cpu=0,
                load_cpu=1,
                gateway_bin=str(Path(sys.executable).with_name("gateway")),
                gateway_args=[],
                gateway_env=env,
                compare_env={},
                compare_label="",
                startup_timeout_s=60,
                bundle=args.bundle,
            )
            bodies = run.write_bodies(tmp, stream_usage=True)
            upstream_port = free_port()
            upstream = procs.start(mock_command(cfg, upstream_port), 1, tmp / "upstream.log")
            ready = bodies["json"].read_bytes()
            alive = lambda: upstream.poll() is None  # noqa: E731
            measure.wait_ready(upstream_port, ready, None, alive, 60)
            target = Target("gateway")
            start_gateway(target, cfg, procs, tmp, upstream_port, ready)
            url = f"http://127.0.0.1:{target.port}/v1/chat/completions"
            body = bodies[args.scenario]
            measure.run_wrk(url, args.concurrency, 2, body, target.token, 1, procs.transient)
            cpu_before = measure.tree_cpu_s(target.pid)
            spy_args = ["--pid", str(target.pid), "--rate", str(args.rate), "--format", "raw"]
            spy_args += ["--duration", str(args.duration), "--output", args.out]
            spy_args += [] if args.native else ["--nonblocking"]  # native frames need a pause
            spy_args += ["--gil", "--threads"] if args.gil else []
            spy_args += ["--native"] if args.native else []
            recorder = subprocess.Popen(
                [spy, "record", *spy_args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            time.sleep(0.5)
            result = measure.run_wrk(
                url, args.concurrency, args.duration, body, target.token, 1, procs.transient
            )
            cpu_s = measure.tree_cpu_s(target.pid) - cpu_before
            recorder.wait(timeout=args.duration + 60)
        finally:
            procs.stop_all()
    per_request_us = cpu_s / max(result.requests, 1) * 1e6
    print(f"{result.requests} requests, ~{per_request_us:.0f} µs CPU each (py-spy on)")
    print(top_functions(Path(args.out), args.top))
    return 0


if __name__ == "__main__":
    os.sched_setaffinity(0, {1})
    sys.exit(main())
