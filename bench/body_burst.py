"""Small requests while a burst of large bodies arrives: how long the others wait.

One gateway (`gateway serve`, the mock provider), two teams: `guarded` (a guardrail
profile on its input) and `free`. Each round, BODIES requests of MB megabytes of prose
go to `guarded` at once while one client sends a small chat request to `free` every
20 ms; the round reports the small requests' median, p90 and longest latency and how
long the burst took. What a large body costs on the event loop (reading, decoding,
checking it) shows up as the small requests' longest wait.

    .venv/bin/python bench/body_burst.py --rounds 5 [--bodies 20] [--mb 4] \
        [--pythonpath /tmp/ta]   # a build unpacked elsewhere (A/B)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

REPO = Path(__file__).resolve().parent.parent
POLICY = """\
providers:
  demo: {type: mock}
models:
  gpt-4o-mini:
    deployments: [{provider: demo, model: mock-chat}]
teams:
  guarded: {models: ["*"], guardrails: [pii]}
  free: {models: ["*"]}
guardrails:
  pii:
    input:
      - {detector: secrets, action: block}
      - {detector: email, action: redact}
      - {detector: credit_card, action: redact}
      - {pattern: "(?i)ignore (all )?previous instructions", name: injection, action: flag}
"""
JSON = "application/json"
SMALL = orjson.dumps(
    {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
)


def big_body(megabytes: float) -> bytes:
    words = "lorem ipsum dolor sit amet 12345 "
    text = words * int(megabytes * 1_000_000 / len(words))
    messages = [{"role": "user", "content": text}]
    return orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 5, "messages": messages})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def one_round(port: int, tokens: dict[str, str], bodies: int, big: bytes) -> dict:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with aiohttp.ClientSession() as http:

        async def post(body: bytes, team: str) -> tuple[int, float]:
            headers = {
                "authorization": f"Bearer {tokens[team]}",
                "content-type": "application/json",
            }
            started = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status, time.perf_counter() - started

        for _ in range(5):
            await post(SMALL, "free")
        done = asyncio.Event()
        small: list[float] = []

        async def pinger() -> None:
            while not done.is_set():
                status, took = await post(SMALL, "free")
                assert status == 200, status
                small.append(took)
                await asyncio.sleep(0.02)

        ping = asyncio.create_task(pinger())
        started = time.perf_counter()
        answers = await asyncio.gather(*(post(big, "guarded") for _ in range(bodies)))
        burst_s = time.perf_counter() - started
        done.set()
        await ping
    assert {status for status, _ in answers} == {200}, answers
    small.sort()
    return {
        "burst_s": burst_s,
        "median_ms": statistics.median(small) * 1000,
        "p90_ms": small[int(len(small) * 0.9)] * 1000,
        "max_ms": small[-1] * 1000,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--bodies", type=int, default=20)
    p.add_argument("--mb", type=float, default=4.0)
    p.add_argument("--pythonpath", help="PYTHONPATH of the gateway (a build unpacked elsewhere)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="body_burst_"))
    (tmp / "policies").mkdir()
    (tmp / "policies" / "bundle.yaml").write_text(POLICY)
    env = {**os.environ, "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'gw.db'}"}
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    gateway = [str(REPO / ".venv/bin/python"), "-c", "from gateway.cli import app; app()"]
    tokens = {}
    for team in ("guarded", "free"):
        minted = subprocess.run(
            [*gateway, "token", "--team", team], env=env, cwd=tmp, capture_output=True, text=True
        )
        if minted.returncode != 0 or not minted.stdout.strip():
            sys.exit(f"gateway token failed: {minted.stdout[-500:]} {minted.stderr[-2000:]}")
        tokens[team] = minted.stdout.strip().splitlines()[-1]
    port = free_port()
    log = (tmp / "serve.log").open("wb")
    server = subprocess.Popen(
        [*gateway, "serve", "--port", str(port), "--policies", str(tmp / "policies")],
        env=env,
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port)):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit(f"the gateway did not start: see {tmp / 'serve.log'}")
                time.sleep(0.2)
        big = big_body(args.mb)
        rounds = []
        for number in range(args.rounds):
            found = asyncio.run(one_round(port, tokens, args.bodies, big))
            rounds.append(found)
            print(f"round {number + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in found.items()))
        print(
            f"median of {args.rounds} rounds ({args.bodies} x {len(big) / 1e6:.1f} MB): "
            + ", ".join(
                f"{key} {statistics.median(r[key] for r in rounds):.1f}" for key in rounds[0]
            )
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
