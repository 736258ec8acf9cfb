"""The SQLite file deleted or replaced under a running gateway: not ready, writes refused.

Before, open connections kept writing into the unlinked file: /readyz stayed green and
`POST /admin/clients` answered 201 for a client that no restart would ever see.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx2 as httpx

from tests.support.processes import run_gateway
from tests.support.serving import serve_process


def _admin_token(tmp_path: Path) -> str:
    minted = run_gateway("token", "--team", "ops", "--scope", "gateway:admin", cwd=tmp_path)
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip().splitlines()[-1]


def _assert_refused(origin: str, token: str, what: str) -> None:
    with httpx.Client(base_url=origin, timeout=10) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert what in ready.json()["checks"]["database"]
        assert ready.headers["x-request-id"]
        created = http.post(
            "/admin/clients",
            json={"team": "demo", "name": "after-delete"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 503, created.text
        assert created.json()["error"]["code"] == "database_unavailable"
        assert "client_secret" not in created.text


def test_deleted_database_file_turns_readyz_red_and_writes_into_503(tmp_path):
    """Deleting gateway.db while serving: /readyz 503 naming why, POST /admin/clients 503."""
    with serve_process(tmp_path) as server:
        token = _admin_token(tmp_path)
        with httpx.Client(base_url=server.origin, timeout=10) as http:
            assert http.get("/readyz").status_code == 200
        for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        _assert_refused(server.origin, token, "deleted")


def test_replaced_database_file_turns_readyz_red_and_writes_into_503(tmp_path):
    """A different file moved over gateway.db (a restore gone wrong): 503, not a silent mix."""
    with serve_process(tmp_path) as server:
        token = _admin_token(tmp_path)
        shutil.copy(tmp_path / "gateway.db", tmp_path / "copy.db")
        (tmp_path / "copy.db").replace(tmp_path / "gateway.db")
        _assert_refused(server.origin, token, "replaced")


def test_a_deleted_database_file_is_one_warning_line_not_a_traceback(tmp_path):
    """The documented 503 for a deleted file is a handled outage: a warning naming why,
    no "unhandled error" or ASGI traceback in the log."""
    with serve_process(tmp_path) as server:
        token = _admin_token(tmp_path)
        for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        with httpx.Client(base_url=server.origin, timeout=10) as http:
            login = http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=("cl_nobody", "secret"),
            )
            policy = http.get("/admin/policy", headers={"Authorization": f"Bearer {token}"})
        for answer in (login, policy):
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1"
        assert login.json()["error"] == "temporarily_unavailable"  # OAuth's shape (RFC 6749)
        assert policy.json()["error"]["code"] == "database_unavailable"
        log = server.stderr()
    assert "Traceback" not in log and "unhandled error" not in log, log
    warnings = [line for line in log.splitlines() if "database unavailable" in line]
    assert len(warnings) == 2 and all("was deleted while serving" in w for w in warnings), log
