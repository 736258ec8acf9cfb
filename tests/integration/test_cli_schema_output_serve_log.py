"""`gateway serve`'s log output: the warning of a request the database could not answer
carries that request's id, as its access line and its answer do (SPEC §7).

(Kept beside the CLI output tests: it reads the output of the `gateway serve` command.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.support.processes import run_gateway
from tests.support.serving import ServeProcess, serve_process


def _log_until_access_line(server: ServeProcess) -> list[dict[str, Any]]:
    """The log's JSON lines, once an access line is among them (they are written in
    batches, a moment after the answer)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in server.stderr().splitlines() if line[:1] == "{"]
        if any(line["logger"] == "gateway.access" for line in lines):
            return lines
        assert time.monotonic() < deadline, "no access line"
        time.sleep(0.05)


def test_the_database_unavailable_warning_carries_the_request_id(tmp_path: Path) -> None:
    """GET /admin/policy with the database file deleted: the 503, its access line and the
    `database unavailable` warning all carry the caller's x-request-id."""
    with serve_process(tmp_path) as server:
        minted = run_gateway("token", "--team", "ops", "--scope", "gateway:admin", cwd=tmp_path)
        token = minted.stdout.strip().splitlines()[-1]
        for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        answer = httpx.get(
            f"{server.origin}/admin/policy",
            headers={"Authorization": f"Bearer {token}", "x-request-id": "req-outage-1"},
            timeout=10,
        )
        lines = _log_until_access_line(server)
    assert answer.status_code == 503, answer.text
    assert answer.headers["x-request-id"] == "req-outage-1"
    warning = next(line for line in lines if line["msg"] == "database unavailable: answered 503")
    access = [line["request_id"] for line in lines if line["logger"] == "gateway.access"]
    assert access == ["req-outage-1"]
    assert warning["request_id"] == "req-outage-1"
