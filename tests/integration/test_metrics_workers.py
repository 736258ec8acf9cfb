"""`gateway serve --workers 2`: every scrape, whichever worker answers it, adds up both
workers' counts (prometheus multiprocess mode in a per-run directory the gateway
creates and removes)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx2 as httpx

from tests.support.metrics import total
from tests.support.processes import run_gateway
from tests.support.serving import serve_process

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}]}


def counting_pids(run_dir: Path) -> set[str]:
    """Workers that have written a counter (prometheus-client's `counter_<pid>.db`)."""
    return {
        m.group(1)
        for f in run_dir.glob("counter_*.db")
        if (m := re.match(r"counter_(\d+)", f.name))
    }


async def send_to_both_workers(http: httpx.AsyncClient, token: str, run_dir: Path) -> int:
    """Concurrent batches of chat requests on new connections, at least one, until both
    workers have served some; how many were sent (all answered 200)."""
    sent = 0
    bearer = {"Authorization": f"Bearer {token}"}
    while not sent or len(counting_pids(run_dir)) < 2:
        assert sent < 400, "every request went to one worker"
        replies = await asyncio.gather(
            *(http.post("/v1/chat/completions", json=CHAT, headers=bearer) for _ in range(10))
        )
        assert [reply.status_code for reply in replies] == [200] * len(replies)
        sent += len(replies)
    return sent


async def test_two_workers_scrape_as_one(tmp_path, redis_url):
    """Requests spread over two worker processes; each of several scrapes shows them all,
    and the per-run metrics directory is gone once the server stopped."""
    token = run_gateway("token", "--team", "demo", cwd=tmp_path).stdout.split()[-1]
    env = {"GATEWAY_REDIS_URL": redis_url, "TMPDIR": str(tmp_path)}
    with serve_process(tmp_path, env, ("--workers", "2")) as server:
        (run_dir,) = tmp_path.glob("gateway-metrics-*")
        sent = tokens_in = tokens_out = 0
        # New connections in concurrent batches until both workers have served some.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.origin, limits=limits) as http:
            bearer = {"Authorization": f"Bearer {token}"}
            while len(counting_pids(run_dir)) < 2:
                assert sent < 400, "every request went to one worker"
                replies = await asyncio.gather(
                    *(
                        http.post("/v1/chat/completions", json=CHAT, headers=bearer)
                        for _ in range(10)
                    )
                )
                for reply in replies:
                    assert reply.status_code == 200, reply.text
                    tokens_in += reply.json()["usage"]["prompt_tokens"]
                    tokens_out += reply.json()["usage"]["completion_tokens"]
                sent += len(replies)
            scrapes = [(await http.get("/metrics")).text for _ in range(6)]
    for text in scrapes:
        assert total(text, "gateway_requests_total", team="demo", status="200") == sent
        assert total(text, "gateway_tokens_total", direction="input") == tokens_in
        assert total(text, "gateway_tokens_total", direction="output") == tokens_out
        assert total(text, "gateway_request_duration_seconds_count") == sent
        assert total(text, "gateway_policy_version") == 1
        # Per-process figures of whichever worker answered would pass for the server's:
        # left out under --workers, as prometheus-client's multiprocess mode documents.
        assert "process_cpu_seconds_total" not in text
    assert not run_dir.exists()


async def test_an_idle_servers_ledger_backlog_reads_zero_on_every_scrape(tmp_path, redis_url):
    """Once the ledger has written every row, scrapes show no backlog, whichever worker
    answers them: the worker no scrape reaches reports its drained queue too."""
    token = run_gateway("token", "--team", "demo", cwd=tmp_path).stdout.split()[-1]
    env = {"GATEWAY_REDIS_URL": redis_url, "TMPDIR": str(tmp_path)}
    with serve_process(tmp_path, env, ("--workers", "2")) as server:
        (run_dir,) = tmp_path.glob("gateway-metrics-*")
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.origin, limits=limits) as http:
            # Load for a few seconds, as the probe did: each worker notes its backlog
            # (at most once a second) while rows are queued.
            load_until = time.monotonic() + 3
            while time.monotonic() < load_until:
                await send_to_both_workers(http, token, run_dir)
                await asyncio.sleep(0.2)
        # One kept-alive connection: every scrape reaches the same worker, as a
        # Prometheus behind a Service may for a long while.
        async with httpx.AsyncClient(base_url=server.origin) as scraper:
            deadline = time.monotonic() + 20
            while total((await scraper.get("/metrics")).text, "gateway_ledger_queue_rows"):
                assert time.monotonic() < deadline, "the backlog gauge stays above zero"
                await asyncio.sleep(0.3)
            scrapes = [(await scraper.get("/metrics")).text for _ in range(5)]
    for text in scrapes:
        assert total(text, "gateway_ledger_queue_rows") == 0
        assert total(text, "gateway_ledger_spool_bytes") == 0
