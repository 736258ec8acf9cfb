"""A/B of two gateway configurations over several bench/run.py invocations.

One invocation's ratio moves by ±3 % from one start of the processes to the next
(memory layout, hash seeds), more than the interleaved runs inside it vary. This
runs `--rounds` invocations, swapping which configuration is measured first each
time, and prints every invocation's B ÷ A per scenario and their median.

    .venv/bin/python bench/ab.py --rounds 4 --scenarios json --concurrency 16 \
        --a GATEWAY_OTLP_ENDPOINT= --a GATEWAY_METRICS=off \
        --b GATEWAY_OTLP_ENDPOINT=http://127.0.0.1:47318 --b GATEWAY_METRICS=on \
        [--a-bundle bench/policies/bundle.yaml --b-bundle bench/policies/limits.yaml]

A and B set the same keys (a key only one of them sets is emptied for the other); both
get PYTHONPATH=<this tree> unless they set it. Arguments after `--` go to run.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--a", action="append", default=[], metavar="K=V", help="A's environment")
    p.add_argument("--b", action="append", default=[], metavar="K=V", help="B's environment")
    p.add_argument("--a-bundle", type=Path, default=BENCH_DIR / "policies" / "bundle.yaml")
    p.add_argument("--b-bundle", type=Path)
    p.add_argument("--scenarios", nargs="+", default=["json", "stream"])
    p.add_argument("--concurrency", nargs="+", default=["16"])
    p.add_argument("--repeat", default="3")
    p.add_argument("rest", nargs="*", help="more run.py arguments (after --)")
    return p.parse_args()


def with_path(env: list[str]) -> list[str]:
    if any(kv.startswith("PYTHONPATH=") for kv in env):
        return env
    return [f"PYTHONPATH={REPO}", *env]


Key = tuple[str, int]  # (scenario, concurrency)


def one_round(
    args: argparse.Namespace, b_first: bool, out: Path
) -> tuple[dict[Key, float], dict[Key, float]]:
    """One invocation (`gateway` is the configuration measured first in each pair):
    B ÷ A, and A's µs, per scenario and concurrency."""
    a_env, b_env = with_path(args.a), with_path(args.b)
    a_bundle, b_bundle = args.a_bundle, args.b_bundle or args.a_bundle
    first, second = ((b_env, b_bundle), (a_env, a_bundle)) if b_first else (
        (a_env, a_bundle), (b_env, b_bundle))  # fmt: skip
    command = [sys.executable, str(BENCH_DIR / "run.py"), "--targets", "gateway",
               "gateway-before", "--ttft-requests", "0", "--repeat", args.repeat,
               "--scenarios", *args.scenarios, "--concurrency", *args.concurrency,
               "--bundle", str(first[1]), "--compare-bundle", str(second[1]),
               "--out", str(out)]  # fmt: skip
    # gateway-before = gateway's environment + compare-env: undo first's settings.
    for kv in first[0]:
        command += ["--gateway-env", kv]
    undo = {kv.split("=", 1)[0]: "" for kv in first[0]}
    undo.update(dict(kv.split("=", 1) for kv in second[0]))
    for key, value in undo.items():
        command += ["--compare-env", f"{key}={value}"]
    command += args.rest
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    found = json.loads(max(out.glob("*.json"), key=lambda p: p.stat().st_mtime).read_text())
    medians: dict[str, dict[Key, float]] = {}
    for target in found["results"]:
        by: dict[Key, list[float]] = {}
        for run in target["runs"]:
            by.setdefault((run["scenario"], run["concurrency"]), []).append(
                run["cpu_us_per_request"]
            )
        medians[target["name"]] = {k: statistics.median(v) for k, v in by.items()}
    a_name, b_name = ("gateway-before", "gateway") if b_first else ("gateway", "gateway-before")
    a, b = medians[a_name], medians[b_name]
    return {k: b[k] / a[k] for k in a}, a


def main() -> None:
    args = parse_args()
    out = BENCH_DIR / "out" / "ab"
    out.mkdir(parents=True, exist_ok=True)
    rounds = []
    for number in range(args.rounds):
        ratios, a_us = one_round(args, b_first=number % 2 == 0, out=out)
        rounds.append((ratios, a_us))
        shown = "  ".join(f"{s} c={c}: {ratio:.3f}" for (s, c), ratio in ratios.items())
        first = "B" if number % 2 == 0 else "A"
        print(f"round {number + 1} ({first} first): B ÷ A  {shown}", flush=True)
    for key in rounds[0][0]:
        found = [ratios[key] for ratios, _ in rounds]
        a_median = statistics.median(a_us[key] for _, a_us in rounds)
        print(
            f"{key[0]} c={key[1]}: B ÷ A median {statistics.median(found):.3f} "
            f"(min {min(found):.3f}, max {max(found):.3f}; A {a_median:.0f} µs)"
        )


if __name__ == "__main__":
    main()
