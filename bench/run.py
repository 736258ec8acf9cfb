"""One command for the whole benchmark: `.venv/bin/python bench/run.py`.

Starts one mock upstream (pinned to the load core) and every target server
(pinned to the server core): `direct` (a second mock: the floor), `baseline`
(bare Starlette + aiohttp forwarder) and `gateway`, optionally `gateway-before` (the
same gateway with extra environment, e.g. PYTHONPATH at an older checkout: an A/B in
one run). Checks each answers
correctly, warms each up, then drives them with wrk in interleaved rounds
(scenario x concurrency x repeat, then target), so that noise from other work
on the machine lands on every target alike. Measures time to first token with a
small sequential client, prints a markdown report and writes it, with the raw
numbers, into bench/out/. Stops everything it started on success, error,
Ctrl-C or SIGTERM.

See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import measure
import orjson
import report
from servers import (
    GATEWAYS,
    Config,
    Processes,
    Target,
    free_port,
    gateway_env,
    gateway_missing,
    log_tail,
    mock_command,
    start_target,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
TARGETS = ("direct", "baseline", *GATEWAYS)
DEFAULT_TARGETS = ("direct", "baseline", "gateway")  # plus gateway-before with --compare-env
SCENARIOS = ("json", "stream")
STREAM_EVENTS = 20  # what bench/mock_upstream.py sends
GATEWAY_MODEL = "bench-model"

PROMPT = (
    "You are reviewing a pull request for an OpenAI-compatible LLM gateway. The change moves "
    "token accounting out of the request path: usage is now settled after the response has been "
    "sent, and ledger rows are written in batches by a background task. Summarise the risks of "
    "this change in three bullet points, then suggest one test that would catch a lost ledger row "
    "when the process is stopped between sending the response and flushing the batch. Consider "
    "budgets that are shared by several replicas through Redis, streams that are cancelled by the "
    "client halfway through, and upstreams that report no usage at all so the gateway must count "
    "tokens itself. Keep the answer short and concrete, and name the functions you would change."
)


class Stop(BaseException):
    """Raised from a signal handler so that cleanup runs."""


# --- measuring ----------------------------------------------------------------------------------


def check_answers(target: Target, bodies: dict[str, bytes], stream_usage: bool) -> None:
    """One JSON and one streaming request through the target: are the answers right?"""
    status, content = measure.post(target.port, bodies["json"], target.token)
    try:
        reply = orjson.loads(content) if status == 200 else {}
    except orjson.JSONDecodeError:
        reply = {}
    json_ok = isinstance(reply, dict) and bool(reply.get("choices")) and "usage" in reply
    status_s, content_s = measure.post(target.port, bodies["stream"], target.token)
    events, usage, done = measure.count_stream_events(content_s)
    stream_ok = status_s == 200 and events == STREAM_EVENTS and done and usage == stream_usage
    if not json_ok:
        target.notes.append(f"JSON answer looks wrong: HTTP {status} {content[:300]!r}")
    if not stream_ok:
        target.notes.append(
            f"stream answer looks wrong: HTTP {status_s}, {events} content events "
            f"(expected {STREAM_EVENTS}), usage chunk {usage} (expected {stream_usage}), "
            f"[DONE] {done}"
        )
    target.answers = {"json_ok": json_ok, "stream_ok": stream_ok, "stream_events": events}


def measured_run(
    target: Target,
    cfg: Config,
    procs: Processes,
    scenario: str,
    connections: int,
    body_file: Path,
    repeat: int,
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{target.port}{measure.CHAT_PATH}"
    cpu0 = measure.tree_cpu_s(target.pid)
    loop0 = measure.tree_main_threads_cpu_s(target.pid)
    core0 = measure.cpu_busy_s(cfg.server_cpu)
    wall0 = time.monotonic()
    res = measure.run_wrk(
        url, connections, cfg.duration_s, body_file, target.token, cfg.load_cpu, procs.transient
    )
    cpu_s = measure.tree_cpu_s(target.pid) - cpu0
    loop_s = measure.tree_main_threads_cpu_s(target.pid) - loop0
    wall_s = time.monotonic() - wall0
    other_s = measure.cpu_busy_s(cfg.server_cpu) - core0 - cpu_s
    return {
        "scenario": scenario,
        "concurrency": connections,
        "repeat": repeat,
        "requests": res.requests,
        "duration_s": res.duration_s,
        "requests_per_s": res.requests / res.duration_s if res.duration_s else 0.0,
        "cpu_s": cpu_s,
        "cpu_us_per_request": cpu_s * 1e6 / res.requests if res.requests else None,
        # of it, the main threads' (the event loops'); the rest ran in other threads
        "loop_cpu_us_per_request": loop_s * 1e6 / res.requests if res.requests else None,
        "server_core_other_pct": max(0.0, 100 * other_s / wall_s),
        "latency_ms": res.latency_ms,
        "non_2xx": res.non_2xx,
        "socket_errors": res.socket_errors,
        "peak_rss_mib": measure.tree_peak_rss_kib(target.pid) / 1024,
        "wrk_output": res.output,
    }


def run_all(
    targets: list[Target], cfg: Config, procs: Processes, body_files: dict[str, Path]
) -> None:
    """Warm up, then interleave: for each scenario x concurrency x repeat, every target."""
    live = [t for t in targets if not t.skipped]
    bodies = {s: p.read_bytes() for s, p in body_files.items()}
    for t in live:
        check_answers(t, bodies, cfg.stream_usage)
        for scenario in cfg.scenarios:
            if cfg.warmup_s > 0:
                url = f"http://127.0.0.1:{t.port}{measure.CHAT_PATH}"
                body, c = body_files[scenario], max(cfg.concurrency)
                measure.run_wrk(url, c, cfg.warmup_s, body, t.token, cfg.load_cpu, procs.transient)
    for scenario in cfg.scenarios:
        for c in cfg.concurrency:
            for rep in range(cfg.repeat):
                for t in live:
                    run = measured_run(t, cfg, procs, scenario, c, body_files[scenario], rep)
                    t.runs.append(run)
                    errors = run["non_2xx"] + run["socket_errors"]
                    print(
                        f"  {scenario:6} c={c:<3} #{rep + 1} {t.name:14} {run['requests']:>7} req "
                        f"{run['cpu_us_per_request'] or 0:7.0f} µs/req "
                        f"(loop {run['loop_cpu_us_per_request'] or 0:4.0f})  "
                        f"p50 {run['latency_ms'].get('p50', 0):6.2f} ms  "
                        f"other load {run['server_core_other_pct']:3.0f}%"
                        + (f"  {errors} ERRORS" if errors else ""),
                        flush=True,
                    )
    # Time to first token: interleaved batches of sequential streaming requests.
    batches = 4
    per_batch = max(1, cfg.ttft_requests // batches)
    for _ in range(batches):
        for t in live:
            t.ttft_s += measure.time_to_first_token(t.port, bodies["stream"], t.token, per_batch)
    for t in live:
        samples = sorted(t.ttft_s)
        t.ttft = {
            "requests": len(samples),
            "p50_ms": statistics.median(samples) * 1000,
            "p90_ms": samples[int(0.9 * (len(samples) - 1))] * 1000,
            "min_ms": samples[0] * 1000,
        }
        t.peak_rss_mib = measure.tree_peak_rss_kib(t.pid) / 1024


# --- main ---------------------------------------------------------------------------------------


def git_commit(checkout: Path = REPO) -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=checkout, capture_output=True)
        return out.stdout.decode().strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def code_label(env: dict[str, str]) -> str:
    """Which gateway code a target imports: the commit its PYTHONPATH's first entry is at."""
    first = env.get("PYTHONPATH", "").split(os.pathsep)[0]
    if not first:
        return "the installed package"
    checkout = Path(first)
    if not checkout.is_dir():
        return f"PYTHONPATH={first} (missing)"
    commit = git_commit(checkout)
    return f"{commit} ({first})" if commit != "unknown" else f"PYTHONPATH={first}"


def write_bodies(tmp: Path, stream_usage: bool) -> dict[str, Path]:
    messages = [
        {"role": "system", "content": "You are a careful senior engineer. Answer briefly."},
        {"role": "user", "content": PROMPT},
    ]
    base = {"model": GATEWAY_MODEL, "messages": messages, "max_tokens": 256, "temperature": 0.2}
    stream: dict[str, Any] = {**base, "stream": True}
    if stream_usage:
        stream["stream_options"] = {"include_usage": True}
    paths = {"json": tmp / "json.body", "stream": tmp / "stream.body"}
    paths["json"].write_bytes(orjson.dumps(base))
    paths["stream"].write_bytes(orjson.dumps(stream))
    return paths


def parse_args() -> tuple[Config, list[str], Path]:
    p = argparse.ArgumentParser(description="Benchmark the gateway against a bare forwarder.")
    p.add_argument("--targets", nargs="+", choices=TARGETS, default=list(DEFAULT_TARGETS))
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--repeat", type=int, default=3, help="runs per target x scenario x conc")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per scenario")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    p.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    p.add_argument("--ttft-requests", type=int, default=200)
    p.add_argument("--event-interval-ms", type=float, default=1.0, help="mock: gap between events")
    p.add_argument(
        "--no-stream-usage",
        dest="stream_usage",
        action="store_false",
        help="streaming requests do not ask for stream_options.include_usage",
    )
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--python", default=sys.executable, help="interpreter for mocks and baseline")
    p.add_argument("--gateway-bin", default=str(REPO / ".venv" / "bin" / "gateway"))
    p.add_argument("--gateway-arg", action="append", default=[], help="extra `serve` argument")
    p.add_argument("--gateway-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--compare-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="adds target gateway-before: the gateway with this extra environment variable",
    )
    p.add_argument("--compare-label", help="what gateway-before runs (default: its commit)")
    p.add_argument(
        "--bundle", type=Path, default=BENCH_DIR / "policies" / "bundle.yaml", help="policy"
    )
    p.add_argument("--compare-bundle", type=Path, help="gateway-before's policy (default: same)")
    p.add_argument("--startup-timeout", type=float, default=60.0)
    p.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    a = p.parse_args()
    cfg = Config(
        python=a.python,
        duration_s=a.duration,
        repeat=a.repeat,
        warmup_s=a.warmup,
        concurrency=a.concurrency,
        ttft_requests=a.ttft_requests,
        event_interval_ms=a.event_interval_ms,
        stream_usage=a.stream_usage,
        server_cpu=a.server_cpu,
        load_cpu=a.load_cpu,
        gateway_bin=str(Path(a.gateway_bin).absolute()),
        gateway_args=a.gateway_arg,
        gateway_env=dict(kv.split("=", 1) for kv in a.gateway_env),
        compare_env=dict(kv.split("=", 1) for kv in a.compare_env),
        compare_label=a.compare_label or "",
        startup_timeout_s=a.startup_timeout,
        bundle=str(a.bundle.absolute()),
        compare_bundle=str(a.compare_bundle.absolute()) if a.compare_bundle else None,
        scenarios=tuple(a.scenarios),
    )
    if not cfg.compare_label:
        cfg = replace(cfg, compare_label=code_label(gateway_env(cfg, "gateway-before")))
    names = list(a.targets)
    if (cfg.compare_env or cfg.compare_bundle) and "gateway-before" not in names:
        names.append("gateway-before")
    return cfg, names, a.out


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop(f"signal {signum}")


def bench(cfg: Config, names: list[str], procs: Processes, tmp: Path) -> list[Target]:
    body_files = write_bodies(tmp, cfg.stream_usage)
    ready = body_files["json"].read_bytes()
    upstream_port = free_port()
    upstream = procs.start(mock_command(cfg, upstream_port), cfg.load_cpu, tmp / "upstream.log")
    measure.wait_ready(
        upstream_port, ready, None, lambda: upstream.poll() is None, cfg.startup_timeout_s
    )
    targets = [Target(name) for name in names]
    for t in targets:
        if t.name in GATEWAYS and (reason := gateway_missing(cfg, t.name)):
            t.skipped = reason
            print(f"{t.name}: skipped: {reason}", flush=True)
            continue
        try:
            start_target(t, cfg, procs, tmp, upstream_port, ready)
            print(f"{t.name}: up on port {t.port} (pid {t.pid})", flush=True)
        except Exception as exc:  # a target that will not start must not lose the others
            log = tmp / f"{t.name}.log"
            t.skipped = f"failed to start: {exc}"
            print(f"{t.name}: FAILED to start: {exc}\n{log_tail(log)}", file=sys.stderr)
    run_all(targets, cfg, procs, body_files)
    return targets


def main() -> int:
    cfg, names, out_dir = parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (apt-get install wrk util-linux)", file=sys.stderr)
            return 2
    os.sched_setaffinity(0, {cfg.load_cpu})  # the harness, wrk and probes stay off the server core
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    meta: dict[str, Any] = {
        "commit": git_commit(),
        "started_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "config": asdict(cfg),
        "code": {
            "gateway": code_label(gateway_env(cfg, "gateway")),
            "gateway-before": cfg.compare_label,
        },
    }
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
            try:
                targets = bench(cfg, names, procs, Path(tmp))
            finally:  # before the folder goes: a live gateway still writes into it
                procs.stop_all()
    except (KeyboardInterrupt, Stop):
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    meta["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results = [
        {k: v for k, v in asdict(t).items() if k not in ("port", "pid", "token", "ttft_s")}
        for t in targets
    ]
    text = report.render(meta, results)
    print("\n" + text)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + meta["commit"]
    (out_dir / f"{stem}.json").write_text(
        json.dumps({**meta, "results": results}, indent=2, default=str)
    )
    (out_dir / f"{stem}.md").write_text(text)
    print(f"raw results: {out_dir / (stem + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
