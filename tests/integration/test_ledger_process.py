"""Nothing lost, as an operator meets it: `gateway serve` as a real process while the
database goes away for 30 s, on SIGTERM during a burst and during a stream, and on
`kill -9` (rows already spooled are replayed by the next start).

The database "goes away" for the gateway only: SQLite is write-locked by another
process; PostgreSQL is reached through a TCP proxy the test cuts (the shared server
keeps running for everyone else).
"""

from __future__ import annotations

import asyncio
import collections
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from gateway.db import create_engine, migrate
from tests.support.processes import run_gateway
from tests.support.serving import ServeProcess, serve_process
from tests.support.sqlite_lock import sqlite_write_lock
from tests.support.tcp_proxy import TcpProxy
from tests.support.upstream import Behaviour, MockUpstream

AWAY_S = 30.0
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def ledger_counts(url: str) -> collections.Counter[str]:
    """request id → rows, read straight from the database."""

    async def read() -> collections.Counter[str]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT request_id FROM usage_ledger"))
                return collections.Counter(request_id for (request_id,) in rows)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def mint(tmp_path: Path, url: str) -> str:
    done = run_gateway("token", "--team", "demo", cwd=tmp_path, env={"GATEWAY_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


def wait_until(check: Callable[[], bool], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


class Load:
    """Clients sending chat requests in threads until stopped; every answer's request id."""

    def __init__(self, origin: str, token: str, clients: int = 2, pause_s: float = 0.02):
        self.origin, self.token, self.pause_s = origin, token, pause_s
        self.answered: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True) for _ in range(clients)]

    def _send(self) -> None:
        with httpx.Client(base_url=self.origin, timeout=30) as http:
            while not self._stop.is_set():
                try:
                    reply = http.post(
                        "/v1/chat/completions",
                        json=CHAT,
                        headers={"Authorization": f"Bearer {self.token}"},
                    )
                except httpx.HTTPError:
                    time.sleep(0.05)  # the server is going away: nothing was answered
                    continue
                self.answered.append((reply.headers["x-request-id"], reply.status_code))
                time.sleep(self.pause_s)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def stop(server: ServeProcess) -> None:
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) in (0, -signal.SIGTERM), server.stderr()


def assert_each_once(answered: list[tuple[str, int]], counts: collections.Counter[str]) -> None:
    ids = [request_id for request_id, _ in answered]
    assert len(ids) == len(set(ids))  # the gateway made every id (clients sent none)
    missing = [i for i in ids if counts[i] == 0]
    doubled = [i for i in ids if counts[i] > 1]
    assert (missing, doubled) == ([], [])
    assert sum(counts.values()) == len(ids)  # and no row for a request nobody saw answered


async def _fresh_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()
    await migrate(url)


@contextmanager
def database_for(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, str, Callable[[], object]]]:
    """(URL for the gateway, URL for the test, a context manager making it go away)."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
        yield url, url, lambda: sqlite_write_lock(tmp_path / "gateway.db")
        return
    direct: str = request.getfixturevalue("postgres_url")  # this session's database
    parsed = make_url(direct)
    asyncio.run(_fresh_schema(direct))
    with TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:

        @contextmanager
        def away() -> Iterator[None]:
            proxy.cut()
            try:
                yield
            finally:
                proxy.restore()

        yield parsed.set(port=proxy.port).render_as_string(hide_password=False), direct, away


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_database_away_for_30s_loses_no_row_and_doubles_none(kind, tmp_path, request):
    """Requests flow before, during and after a 30 s outage of the database; once it is
    back every answered request id is in the ledger exactly once."""
    with database_for(kind, tmp_path, request) as (url, direct, away):
        env = {"GATEWAY_DATABASE_URL": url}
        with serve_process(tmp_path, env) as server:
            token = mint(tmp_path, direct)
            with Load(server.origin, token) as load:
                time.sleep(2)
                with away():  # type: ignore[attr-defined]
                    time.sleep(AWAY_S)
                    during = len(load.answered)
                time.sleep(3)
            assert during > 50, "requests kept flowing while the database was away"
            # Back: the spool is replayed while the gateway keeps serving.
            wait_until(lambda: sum(ledger_counts(direct).values()) >= len(load.answered), 60)
            assert "rows go to the spool" in server.stderr()
            stop(server)
    statuses = collections.Counter(status for _, status in load.answered)
    assert statuses[200] > 0, statuses
    assert_each_once(load.answered, ledger_counts(direct))
    assert not list(tmp_path.rglob("ledger-*.jsonl"))  # replayed and removed at exit


def test_sigterm_during_a_burst_writes_every_answered_request(tmp_path):
    """SIGTERM while eight clients send: each answered request has its row after exit."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    with serve_process(tmp_path) as server:
        token = mint(tmp_path, url)
        with Load(server.origin, token, clients=8, pause_s=0) as load:
            wait_until(lambda: len(load.answered) >= 100)
            stop(server)
    assert len(load.answered) >= 100
    assert_each_once(load.answered, ledger_counts(url))


@contextmanager
def upstream_in_thread(behaviour: Behaviour) -> Iterator[MockUpstream]:
    """A mock upstream on its own event loop, so blocking test code never stalls it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    up = MockUpstream(name="slow")
    asyncio.run_coroutine_threadsafe(up.__aenter__(), loop).result(10)
    up.behave(behaviour)
    try:
        yield up
    finally:
        asyncio.run_coroutine_threadsafe(up.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


SLOW_POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  slow:
    deployments: [{{provider: up, model: upstream-model}}]
    price: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}
teams:
  demo: {{models: ["*"]}}
"""


def test_sigterm_during_a_stream_writes_its_row_after_it_ends(tmp_path):
    """A stream under way at SIGTERM is drained to its end, and then its row is written."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    stream = Behaviour(mode="ok", chunks=20, chunk_delay_s=0.1, content="word " * 40)
    with upstream_in_thread(stream) as up:
        (tmp_path / "policies").mkdir()
        (tmp_path / "policies" / "bundle.yaml").write_text(SLOW_POLICY.format(base=up.base_url))
        with serve_process(tmp_path) as server:
            token = mint(tmp_path, url)
            events: list[str] = []
            with httpx.Client(base_url=server.origin, timeout=30) as http:
                with http.stream(
                    "POST",
                    "/v1/chat/completions",
                    json={**CHAT, "model": "slow", "stream": True},
                    headers={"Authorization": f"Bearer {token}"},
                ) as reply:
                    request_id = reply.headers["x-request-id"]
                    for line in reply.iter_lines():
                        if not line.startswith("data:"):
                            continue  # the blank line after each event: no second signal
                        events.append(line)
                        if len(events) == 3:  # once: a second SIGTERM means "stop now"
                            server.process.send_signal(signal.SIGTERM)
            assert events[-1] == "data: [DONE]"  # drained to its end
            assert server.process.wait(60) in (0, -signal.SIGTERM)
    assert ledger_counts(url) == {request_id: 1}
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        outcome, output_tokens = db.execute(
            "SELECT outcome, output_tokens FROM usage_ledger"
        ).fetchone()
    assert (outcome, output_tokens) == ("ok", 40)


def test_kill_9_loses_only_unspooled_rows_and_the_next_start_replays_the_spool(tmp_path):
    """The bound: `kill -9` loses only rows not yet committed or spooled (those of the last
    batch interval). Rows spooled before the kill are in the ledger after the next start."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    spool = tmp_path / "gateway.db.ledger-spool"
    with serve_process(tmp_path) as server:
        token = mint(tmp_path, url)
        answered: list[str] = []
        with (
            sqlite_write_lock(tmp_path / "gateway.db"),
            httpx.Client(base_url=server.origin, timeout=30) as http,
        ):
            for _ in range(30):
                reply = http.post(
                    "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {token}"}
                )
                answered.append(reply.headers["x-request-id"])

            def spooled() -> int:
                return sum(p.read_bytes().count(b"\n") for p in spool.rglob("ledger-*.jsonl"))

            wait_until(lambda: spooled() == 30)
            server.process.kill()  # SIGKILL: no flush, no close
            server.process.wait(30)
    assert ledger_counts(url) == {}
    with serve_process(tmp_path) as server:  # the next start replays the dead process's spool
        wait_until(lambda: sum(ledger_counts(url).values()) == 30)
        stop(server)
    assert ledger_counts(url) == {request_id: 1 for request_id in answered}
    assert not list(spool.rglob("ledger-*.jsonl"))
