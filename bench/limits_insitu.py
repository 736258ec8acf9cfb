"""What the limits stage adds to a request, measured inside one gateway (issue 9's target).

ab.py compares two processes, and one start of a process differs from the next by ±3-10 %
in CPU per request (memory layout, hash seeds): more than the stage costs. Here one
gateway serves two teams with the same requests: `bench` with every kind of limit
(bench/policies/limits.yaml's: two team budgets, a per-user budget, team rpm + tpm +
concurrency, per-user rpm + concurrency) and `free` with none, which is that build with
limits off. wrk runs alternate between the two teams' tokens (the order swapped each
round); each run's CPU per request comes from /proc. Same build, process, memory layout
and warm caches on both sides: what differs is the stage's work for a limited team.

    .venv/bin/python bench/limits_insitu.py --rounds 8 --duration 4 --concurrency 16 1 \
        [--redis redis://127.0.0.1:6379]

Prints, per concurrency, each team's median µs per request and the added µs (the median
of the rounds' paired differences, with their range). Results go to bench/out/ as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import measure
from run import REPO, check_answers, write_bodies
from servers import (
    Config,
    Processes,
    Target,
    free_port,
    mint_token,
    mock_command,
    start_gateway,
)

BENCH_DIR = Path(__file__).resolve().parent
LIMITED, FREE = "bench", "free"
FREE_TEAM = f"""  {FREE}:
    models: ["*"]
"""


def parse_args(
    description: str = __doc__.split("\n\n")[0], pairs: bool = False
) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(description=description)
    if pairs:  # limits_paired.py's
        p.add_argument("--pairs", type=int, default=3000, help="requests per team, alternating")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    p.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per team")
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 1])
    p.add_argument("--scenario", choices=("json", "stream"), default="json")
    p.add_argument("--redis", help="GATEWAY_REDIS_URL for the gateway (default: in process)")
    p.add_argument("--gateway-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--limits-bundle",
        type=Path,
        default=BENCH_DIR / "policies" / "limits.yaml",
        help="the bench team's policy (its `teams:` block last; default: every kind of limit)",
    )
    p.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    a = p.parse_args()
    env = dict(kv.split("=", 1) for kv in a.gateway_env)
    env.setdefault("GATEWAY_OTLP_ENDPOINT", "")
    if a.redis:
        env["GATEWAY_REDIS_URL"] = a.redis
    cfg = Config(
        python=sys.executable,
        duration_s=a.duration,
        repeat=a.rounds,
        warmup_s=a.warmup,
        concurrency=a.concurrency,
        ttft_requests=0,
        event_interval_ms=1.0,
        stream_usage=True,
        server_cpu=0,
        load_cpu=1,
        gateway_bin=str(REPO / ".venv" / "bin" / "gateway"),
        gateway_args=[],
        gateway_env=env,
        compare_env={},
        compare_label="",
        startup_timeout_s=60.0,
    )
    return cfg, a


def two_team_bundle(tmp: Path, limits_bundle: Path) -> Path:
    """`limits_bundle` with a team without limits added (its `teams:` block is the file's last)."""
    text = limits_bundle.read_text()
    path = tmp / "two_teams.yaml"
    path.write_text(text.rstrip("\n") + "\n" + FREE_TEAM)
    return path


def two_team_gateway(
    cfg: Config, procs: Processes, tmp: Path, limits_bundle: Path
) -> tuple[Target, dict[str, str], dict[str, Path]]:
    """The mock upstream and one gateway serving both teams (their answers checked):
    the gateway, each team's token, and the request bodies."""
    bodies = write_bodies(tmp, stream_usage=True)
    upstream_port = free_port()
    upstream = procs.start(mock_command(cfg, upstream_port), cfg.load_cpu, tmp / "up.log")
    ready = bodies["json"].read_bytes()
    measure.wait_ready(
        upstream_port, ready, None, lambda: upstream.poll() is None, cfg.startup_timeout_s
    )
    cfg2 = Config(**{**cfg.__dict__, "bundle": str(two_team_bundle(tmp, limits_bundle))})
    target = Target("gateway")
    start_gateway(target, cfg2, procs, tmp, upstream_port, ready)
    env = {**os.environ, **cfg.gateway_env}
    env["GATEWAY_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp / 'gateway' / 'bench.db'}"
    env["GATEWAY_POLICY_DIR"] = str(tmp / "gateway" / "policies")
    tokens = {LIMITED: target.token or "", FREE: mint_token(cfg, env, tmp / "gateway", FREE)}
    check_answers(target, {k: p.read_bytes() for k, p in bodies.items()}, True)
    return target, tokens, bodies


def cpu_per_request(
    target: Target, token: str, cfg: Config, procs: Processes, conc: int, body: Path, seconds: int
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{target.port}{measure.CHAT_PATH}"
    cpu0, sys0 = measure.tree_cpu_s(target.pid), measure.tree_sys_cpu_s(target.pid)
    res = measure.run_wrk(url, conc, seconds, body, token, cfg.load_cpu, procs.transient)
    cpu_s = measure.tree_cpu_s(target.pid) - cpu0
    sys_s = measure.tree_sys_cpu_s(target.pid) - sys0
    if res.non_2xx or res.socket_errors or not res.requests:
        raise RuntimeError(f"wrk: {res.non_2xx} non-2xx, {res.socket_errors} socket errors")
    n = res.requests
    return {"requests": n, "us": cpu_s * 1e6 / n, "sys_us": sys_s * 1e6 / n}


def measure_all(
    target: Target, tokens: dict[str, str], cfg: Config, procs: Processes, body: Path
) -> dict[int, dict[str, list[float]]]:
    found: dict[int, dict[str, list[float]]] = {}
    for conc in cfg.concurrency:
        for team in (LIMITED, FREE):  # warm both paths first
            measure.run_wrk(
                f"http://127.0.0.1:{target.port}{measure.CHAT_PATH}",
                conc,
                cfg.warmup_s,
                body,
                tokens[team],
                cfg.load_cpu,
                procs.transient,
            )
        runs: dict[str, list[float]] = {
            LIMITED: [],
            FREE: [],
            "sys_" + LIMITED: [],
            "sys_" + FREE: [],
        }
        for r in range(cfg.repeat):
            order = (LIMITED, FREE) if r % 2 == 0 else (FREE, LIMITED)
            for team in order:
                run = cpu_per_request(target, tokens[team], cfg, procs, conc, body, cfg.duration_s)
                runs[team].append(run["us"])
                runs["sys_" + team].append(run["sys_us"])
            print(
                f"c={conc} round {r + 1}: limits {runs[LIMITED][-1]:.1f} µs, "
                f"none {runs[FREE][-1]:.1f} µs, +{runs[LIMITED][-1] - runs[FREE][-1]:.1f} "
                f"(kernel {runs['sys_' + LIMITED][-1]:.1f} vs {runs['sys_' + FREE][-1]:.1f})",
                flush=True,
            )
        found[conc] = runs
    return found


def summary(found: dict[int, dict[str, list[float]]]) -> list[dict[str, Any]]:
    rows = []
    for conc, runs in found.items():
        added = [a - b for a, b in zip(runs[LIMITED], runs[FREE], strict=True)]
        none = statistics.median(runs[FREE])
        rows.append(
            {
                "concurrency": conc,
                "none_us": none,
                "limits_us": statistics.median(runs[LIMITED]),
                "added_us": statistics.median(added),
                "added_min": min(added),
                "added_max": max(added),
                "ratio": statistics.median(runs[LIMITED]) / none,
                "rounds": len(added),
            }
        )
    return rows


def main() -> int:
    cfg, args = parse_args()
    os.sched_setaffinity(0, {cfg.load_cpu})
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="insitu-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            target, tokens, bodies = two_team_gateway(cfg, procs, tmp, args.limits_bundle)
            found = measure_all(target, tokens, cfg, procs, bodies[args.scenario])
        finally:
            procs.stop_all()
    rows = summary(found)
    backend = "redis" if args.redis else "in process"
    print(
        f"\n{args.scenario}, {backend}: limits (team {LIMITED}) vs none (team {FREE}), one gateway"
    )
    print("| conc | none µs | limits µs | added µs (median of paired) | min-max | ratio |")
    print("|--:|--:|--:|--:|--:|--:|")
    for row in rows:
        print(
            f"| {row['concurrency']} | {row['none_us']:.1f} | {row['limits_us']:.1f} | "
            f"+{row['added_us']:.1f} | {row['added_min']:+.1f} to {row['added_max']:+.1f} | "
            f"{row['ratio']:.3f}x |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"{stamp}-{commit}-insitu.json"
    raw = {"backend": backend, "scenario": args.scenario, "runs": found, "summary": rows}
    out.write_text(json.dumps(raw, indent=1, default=str))
    print(f"raw: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
