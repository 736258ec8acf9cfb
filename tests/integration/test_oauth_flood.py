"""A flood of bogus token requests against a real `gateway serve`: the token endpoint's
guards keep `/v1/chat/completions` latency within 2x of its unloaded p99.

Before, every attempt cost ~60 ms of scrypt with no bound: 300 bogus requests at 30
concurrent pushed the chat p99 from ~20 ms to ~500 ms. The flood runs in its own process
so that the measuring client's timings are not its victim; the chat requests go one at a
time to the mock provider.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.support.processes import run_gateway
from tests.support.serving import ServeProcess, serve_process

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
FLOOD_REQUESTS = 300
FLOOD_CONCURRENCY = 30
SAMPLES = 150
# The flood sends at least FLOOD_REQUESTS and goes on until the test closes its stdin: a
# count alone ends early on a fast machine (the "cheap" flood is refused at once) and
# leaves nothing to measure against.
FLOOD = """
import asyncio, collections, json, sys, threading, httpx2 as httpx
origin, client_id, total, concurrency, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
async def main():
    statuses = collections.Counter()
    sent = iter(range(10**9))
    async with httpx.AsyncClient(base_url=origin, timeout=30) as http:
        async def worker():
            while True:
                i = next(sent)
                if i >= total and stop.is_set():
                    break
                # Half against the real client with wrong secrets, half unknown ids.
                who = client_id if i % 2 else f"c-bogus{i}"
                # "cheap": the same requests refused before any secret check (no grant_type).
                grant = {"grant_type": "client_credentials"} if mode == "bogus" else {}
                reply = await http.post("/oauth/token", data=grant, auth=(who, f"wrong-{i}"))
                statuses[reply.status_code] += 1
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(json.dumps(statuses))
asyncio.run(main())
"""


def p99_ms(origin: str, token: str, during: subprocess.Popen[str] | None = None) -> float:
    """The p99 of SAMPLES chat completions, one at a time (while `during` runs, if given)."""
    timings: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=origin, timeout=30) as http:
        http.post("/v1/chat/completions", json=CHAT, headers=headers)  # warm the connection
        for _ in range(SAMPLES):
            if during is not None and during.poll() is not None:
                break
            started = time.perf_counter()
            reply = http.post("/v1/chat/completions", json=CHAT, headers=headers)
            timings.append((time.perf_counter() - started) * 1000)
            assert reply.status_code == 200, reply.text
    assert len(timings) == SAMPLES, f"the flood died after {len(timings)} samples"
    timings.sort()
    return timings[int(len(timings) * 0.99) - 1]


def credentials(tmp_path: Path) -> tuple[dict[str, Any], str]:
    created = run_gateway("clients", "create", "--team", "demo", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    minted = run_gateway("token", "--team", "demo", cwd=tmp_path)
    assert minted.returncode == 0, minted.stderr
    return json.loads(created.stdout), minted.stdout.strip().splitlines()[-1]


def token_status(server: ServeProcess, client: dict[str, Any]) -> int:
    reply = httpx.post(
        f"{server.origin}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
        timeout=30,
    )
    return reply.status_code


def flood_while_measuring(
    server: ServeProcess, client_id: str, token: str, mode: str
) -> tuple[float, dict[int, int]]:
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            FLOOD,
            server.origin,
            client_id,
            str(FLOOD_REQUESTS),
            str(FLOOD_CONCURRENCY),
            mode,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    ) as flood:  # closes its pipe however the measuring ends
        try:
            time.sleep(0.3)  # let the flood reach full concurrency
            loaded = p99_ms(server.origin, token, during=flood)
            out, _ = flood.communicate(input="", timeout=120)  # EOF on stdin: stop
        finally:
            if flood.poll() is None:
                flood.kill()
    assert flood.returncode == 0
    return loaded, {int(k): v for k, v in json.loads(out).items()}


@pytest.mark.parametrize(
    "env",
    [
        {},  # the defaults: the address limit ends the flood's scrypt early
        {  # limits out of reach: the bound on concurrent checks alone carries it
            "GATEWAY_LOGIN_FAILURES_PER_CLIENT": "100000",
            "GATEWAY_LOGIN_FAILURES_PER_ADDRESS": "100000",
        },
    ],
    ids=["defaults", "concurrency-bound-only"],
)
def test_a_token_flood_keeps_chat_latency_within_twice_its_p99(tmp_path, env) -> None:
    """300+ bogus token requests at 30 concurrent: chat p99 within 2x of unloaded; the
    client that verified before the flood still gets tokens during and after it."""
    with serve_process(tmp_path, env) as server:
        client, token = credentials(tmp_path)
        assert token_status(server, client) == 200  # verified once: cached for a minute
        # "Unloaded" by scrypt: token requests at 30 concurrent that the endpoint
        # refuses before any secret check. On 2 shared cores their HTTP work alone
        # takes the p99 from ~1 ms to ~10 ms; the bogus credentials must add at most 2x.
        # Up to 3 rounds: one stall of a neighbour's process is the p99 of 150 samples
        # (before the guards every round measured 130-470 ms against ~10 ms).
        rounds = []
        for _ in range(3):
            idle = p99_ms(server.origin, token)
            unloaded, cheap = flood_while_measuring(server, client["client_id"], token, "cheap")
            loaded, statuses = flood_while_measuring(server, client["client_id"], token, "bogus")
            print(
                f"chat p99: idle {idle:.1f} ms, cheap flood {unloaded:.1f} ms {cheap}, "
                f"bogus flood {loaded:.1f} ms {statuses}"
            )
            rounds.append((idle, unloaded, loaded))
            if loaded <= 2 * max(unloaded, idle):
                break
        else:
            raise AssertionError(f"chat p99 (idle, cheap flood, bogus flood) ms: {rounds}")
        assert sum(statuses.values()) >= FLOOD_REQUESTS
        assert set(statuses) <= {401, 429}
        if not env:  # the address limit turned some away (waits for a check slot reach
            assert statuses.get(429, 0) > 0  # 429 only on a slow machine: not asserted)
        assert token_status(server, client) == 200


def test_failed_logins_over_the_limit_get_429_slow_down_with_retry_after(tmp_path) -> None:
    """After the per-client limit of failures from one address: 429 `slow_down` +
    retry-after for that id from that address, while another client from the same
    address still logs in."""
    env = {"GATEWAY_LOGIN_FAILURES_PER_CLIENT": "2", "GATEWAY_LOGIN_FAILURE_WINDOW_S": "30"}
    with serve_process(tmp_path, env) as server, httpx.Client(base_url=server.origin) as http:
        victim, _ = credentials(tmp_path)
        other, _ = credentials(tmp_path)
        grant = {"grant_type": "client_credentials"}
        for _ in range(2):
            wrong = http.post("/oauth/token", data=grant, auth=(victim["client_id"], "wrong"))
            assert wrong.status_code == 401
        refused = http.post(
            "/oauth/token", data=grant, auth=(victim["client_id"], victim["client_secret"])
        )
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "slow_down"
        assert 1 <= int(refused.headers["retry-after"]) <= 30
        assert refused.headers["cache-control"] == "no-store"
        assert token_status(server, other) == 200


def from_address(server: ServeProcess, address: str) -> httpx.Client:
    """A client of `server` whose connections come from `address` (any of 127.0.0.0/8)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.origin, transport=transport, timeout=30)


def test_wrong_secrets_from_one_address_do_not_lock_the_client_out_elsewhere(tmp_path) -> None:
    """Ten wrong secrets for a client from 127.0.0.2 (its id is public, in every token): the
    right secret from 127.0.0.3 still gets a token; 127.0.0.2 is told to slow down."""
    with serve_process(tmp_path) as server:  # the default limits
        victim, _ = credentials(tmp_path)
        grant = {"grant_type": "client_credentials"}
        pair = (victim["client_id"], victim["client_secret"])
        with from_address(server, "127.0.0.2") as attacker:
            for _ in range(10):
                wrong = attacker.post("/oauth/token", data=grant, auth=(victim["client_id"], "x"))
                assert wrong.status_code == 401, wrong.text
            assert attacker.post("/oauth/token", data=grant, auth=pair).status_code == 429
        with from_address(server, "127.0.0.3") as owner:
            reply = owner.post("/oauth/token", data=grant, auth=pair)
        assert reply.status_code == 200, reply.text
        assert reply.json()["access_token"].count(".") == 2


@pytest.mark.parametrize("trusted", [None, "127.0.0.1"])
def test_x_forwarded_for_names_the_caller_only_from_a_trusted_proxy(tmp_path, trusted) -> None:
    """Bad logins from 127.0.0.1, each claiming another address in X-Forwarded-For: by
    default the header is ignored, so the address limit stops them; with the peer named
    in GATEWAY_TRUSTED_PROXIES each counts for the address it names. (uvicorn trusted the
    header from 127.0.0.1 by default: a local peer escaped the limit, or framed another.)"""
    env = {"GATEWAY_LOGIN_FAILURES_PER_ADDRESS": "3", "GATEWAY_LOGIN_FAILURE_WINDOW_S": "60"}
    if trusted:
        env["GATEWAY_TRUSTED_PROXIES"] = trusted
    with serve_process(tmp_path, env) as server, httpx.Client(base_url=server.origin) as http:
        grant = {"grant_type": "client_credentials"}
        statuses = [
            http.post(
                "/oauth/token",
                data=grant,
                auth=(f"c-bogus{i}", "wrong"),
                headers={"x-forwarded-for": f"203.0.113.{i}"},
            ).status_code
            for i in range(8)
        ]
    if trusted:
        assert statuses == [401] * 8
    else:
        assert statuses[:3] == [401] * 3 and set(statuses[3:]) == {429}, statuses


def test_a_trusted_proxy_list_that_does_not_parse_is_refused(tmp_path) -> None:
    result = run_gateway("serve", cwd=tmp_path, env={"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,nope"})
    assert result.returncode == 2
    assert "GATEWAY_TRUSTED_PROXIES: 'nope' is not an IP address or CIDR" in result.stderr
