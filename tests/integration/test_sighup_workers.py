"""logrotate under `gateway serve --workers 2`: `kill -HUP` on the server reopens each
worker's access log; no worker restarts, no request fails, /readyz stays ready."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx2 as httpx

from tests.support.processes import run_gateway
from tests.support.serving import serve_process

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def children_of(pid: int) -> set[int]:
    """The processes whose parent is `pid` (its workers), read from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def request_ids(log: Path) -> set[str]:
    if not log.exists():
        return set()
    return {json.loads(line)["request_id"] for line in log.read_text().splitlines() if line}


async def test_sighup_reopens_every_workers_log_without_a_restart(tmp_path, redis_url):
    """Mid-load `kill -HUP` after the log was moved: every request answered 200, /readyz
    200 throughout, the same worker processes, and new lines in the new file."""
    log = tmp_path / "access.log"
    token = run_gateway("token", "--team", "demo", cwd=tmp_path).stdout.split()[-1]
    bearer = {"Authorization": f"Bearer {token}"}
    env = {"GATEWAY_REDIS_URL": redis_url, "TMPDIR": str(tmp_path), "GATEWAY_ACCESS_LOG": str(log)}
    with serve_process(tmp_path, env, ("--workers", "2")) as server:
        deadline = time.monotonic() + 60
        while len(workers := children_of(server.process.pid)) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            await asyncio.sleep(0.1)
        statuses: list[int] = []
        ready: list[int] = []
        # New connections, so both workers take requests while the signal is handled.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.origin, limits=limits, timeout=30) as http:

            async def load(until: float) -> None:
                while time.monotonic() < until:
                    chat = http.post("/v1/chat/completions", json=CHAT, headers=bearer)
                    replies = await asyncio.gather(chat, http.get("/readyz"))
                    statuses.append(replies[0].status_code)
                    ready.append(replies[1].status_code)

            # uvicorn's restart of two workers took a few seconds: load well past it.
            loads = [asyncio.create_task(load(time.monotonic() + 8)) for _ in range(4)]
            await asyncio.sleep(1)
            log.rename(tmp_path / "access.log.1")
            server.process.send_signal(signal.SIGHUP)
            await asyncio.gather(*loads)
            # Sent once both workers have had ample time to reopen.
            after = [
                (await http.post("/v1/chat/completions", json=CHAT, headers=bearer))
                for _ in range(20)
            ]
            assert [reply.status_code for reply in after] == [200] * 20
            assert children_of(server.process.pid) == workers
        assert server.process.poll() is None
        assert set(statuses) == {200} and set(ready) == {200}
        sent_after = {reply.headers["x-request-id"] for reply in after}
        deadline = time.monotonic() + 30
        while not sent_after <= request_ids(log):
            assert time.monotonic() < deadline, "lines after the HUP are not in the new file"
            await asyncio.sleep(0.1)
        assert not sent_after & request_ids(tmp_path / "access.log.1")
    assert "Traceback" not in server.stderr()
