"""Spooled rows in another database address's spool folder, as an operator meets them:
`gateway serve` replays only its own folder, names each other folder that still holds
rows in one warning, and the move that warning describes gets the rows into the ledger
once (the same PostgreSQL database reached first through a proxy, then directly).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
from sqlalchemy.engine import make_url

from gateway.db import create_engine
from gateway.usage.rollup import store_rows
from gateway.usage.spool import encode_rows
from tests.integration.test_ledger_process import (
    CHAT,
    _fresh_schema,
    ledger_counts,
    mint,
    stop,
    wait_until,
)
from tests.support.ledger_rows import ledger_row
from tests.support.serving import ServeProcess, serve_process
from tests.support.tcp_proxy import TcpProxy

STRANDED = "spool folder holds rows this process does not replay"


def stranded_warnings(server: ServeProcess) -> list[dict[str, Any]]:
    """The log lines naming another spool folder that holds rows."""
    found = []
    for line in server.stderr().splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict) and STRANDED in str(entry.get("msg", "")):
            found.append(entry)
    return found


def test_a_start_names_each_other_folder_holding_rows_and_leaves_it_alone(tmp_path):
    """Rows in another address's folder: one warning per folder, with its files and rows
    and where to move them; nothing replayed from it, nothing said of empty folders."""
    spool = tmp_path / "s1"
    other = spool / "127.0.0.1-47202-probe3"
    other.mkdir(parents=True)
    (other / "ledger-41-aaaaaaaa.jsonl").write_bytes(encode_rows(ledger_row() for _ in range(3)))
    (other / "ledger-42-bbbbbbbb.jsonl").write_bytes(encode_rows(ledger_row() for _ in range(2)))
    before = {path.name: path.read_bytes() for path in other.iterdir()}
    (spool / "db-5432-empty").mkdir()
    (spool / "db-5432-empty" / "ledger-43-cccccccc.jsonl").write_bytes(b"")
    (spool / "db-5432-rejected-only").mkdir()
    (spool / "db-5432-rejected-only" / "rejected.jsonl").write_bytes(b"{}\n")
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    env = {"GATEWAY_DATABASE_URL": url, "GATEWAY_LEDGER_SPOOL_DIR": str(spool)}
    with serve_process(tmp_path, env) as server:
        wait_until(lambda: bool(stranded_warnings(server)))
        time.sleep(0.5)  # a second warning would come now
        warnings = stranded_warnings(server)
        stop(server)
    assert len(warnings) == 1, warnings
    (warning,) = warnings
    assert warning["level"] == "warning"
    assert (warning["stranded_folder"], warning["files"], warning["rows"]) == (str(other), 2, 5)
    own = Path(warning["spool_folder"])
    assert own.parent == spool and own != other
    assert "move its ledger-*.jsonl files" in warning["msg"]
    assert {path.name: path.read_bytes() for path in other.iterdir()} == before
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        assert db.execute("SELECT COUNT(*) FROM usage_ledger").fetchone() == (0,)


def _answer(origin: str, token: str, count: int) -> list[str]:
    with httpx.Client(base_url=origin, timeout=30) as http:
        ids = []
        for _ in range(count):
            reply = http.post(
                "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {token}"}
            )
            assert reply.status_code == 200, reply.text
            ids.append(reply.headers["x-request-id"])
        return ids


def _store(url: str, row: dict[str, Any]) -> None:
    """One row into the ledger as the writer stores it: as if a write had committed
    although it timed out, and the row was spooled all the same."""

    async def store() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await store_rows(conn, [row])
        finally:
            await engine.dispose()

    asyncio.run(store())


def test_the_move_the_warning_describes_replays_the_rows_once(tmp_path, postgres_url):
    """The probe: rows spooled while the database was reached through a proxy stay in that
    address's folder; started on the direct address the gateway warns; moving the files
    as the warning says gets every row into the ledger once, a row already there included."""
    direct = make_url(postgres_url)
    asyncio.run(_fresh_schema(postgres_url))
    spool = tmp_path / "s1"
    spool.mkdir()
    with TcpProxy(direct.host or "127.0.0.1", direct.port or 5432) as proxy:
        proxied = direct.set(port=proxy.port).render_as_string(hide_password=False)
        env = {"GATEWAY_DATABASE_URL": proxied, "GATEWAY_LEDGER_SPOOL_DIR": str(spool)}
        with serve_process(tmp_path, env) as server:
            token = mint(tmp_path, postgres_url)
            stored = _answer(server.origin, token, 3)
            wait_until(lambda: sum(ledger_counts(postgres_url).values()) == 3)
            proxy.cut()
            spooled = _answer(server.origin, token, 5)
            stop(server)
    (first_folder,) = [path for path in spool.iterdir() if any(path.glob("ledger-*.jsonl"))]
    lines = b"".join(path.read_bytes() for path in first_folder.glob("ledger-*.jsonl"))
    assert lines.count(b"\n") == 5
    _store(postgres_url, orjson.loads(lines.splitlines()[0]))

    env = {"GATEWAY_DATABASE_URL": postgres_url, "GATEWAY_LEDGER_SPOOL_DIR": str(spool)}
    with serve_process(tmp_path, env) as server:
        wait_until(lambda: bool(stranded_warnings(server)))
        stop(server)
    (warning,) = stranded_warnings(server)
    assert (warning["stranded_folder"], warning["rows"]) == (str(first_folder), 5)
    assert sum(ledger_counts(postgres_url).values()) == 4  # not replayed from there

    # What the warning says: its ledger-*.jsonl files into this database's folder.
    own = Path(warning["spool_folder"])
    own.mkdir(parents=True, exist_ok=True)
    for path in Path(warning["stranded_folder"]).glob("ledger-*.jsonl"):
        shutil.move(path, own / path.name)
    with serve_process(tmp_path, env) as server:
        wait_until(lambda: sum(ledger_counts(postgres_url).values()) >= 8)
        stop(server)
    assert stranded_warnings(server) == []
    assert ledger_counts(postgres_url) == {request_id: 1 for request_id in stored + spooled}
    assert not list(spool.rglob("ledger-*.jsonl"))
