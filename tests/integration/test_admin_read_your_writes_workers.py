"""SPEC §4: "the replica that made a change enforces it before it answers, so a
`GET /admin/policy` right after a write shows it". Under `gateway serve --workers 2` one
address is two processes: a PATCH answered by one worker, then a GET on a new connection
that another worker may answer, must show the new version and its limits. Before, the
other worker answered the version it enforced until its next poll (3 rounds in 10)."""

from __future__ import annotations

import httpx2 as httpx

from tests.support.processes import run_gateway
from tests.support.serving import serve_process

ROUNDS = 16


def fresh(server_origin: str) -> httpx.Client:
    """A client on a new connection for each request: any worker may accept it."""
    return httpx.Client(base_url=server_origin, limits=httpx.Limits(max_keepalive_connections=0))


def test_a_write_is_read_back_whichever_worker_answers(tmp_path, redis_url):
    admin = run_gateway("token", "--team", "demo", "--scope", "gateway:admin", cwd=tmp_path)
    bearer = {"Authorization": f"Bearer {admin.stdout.split()[-1]}"}
    env = {"GATEWAY_REDIS_URL": redis_url, "TMPDIR": str(tmp_path)}
    with serve_process(tmp_path, env, ("--workers", "2")) as server, fresh(server.origin) as http:
        for round_ in range(ROUNDS):
            base = http.get("/admin/policy", headers=bearer).json()["version"]
            rpm = 1000 + round_
            patched = http.patch(
                "/admin/teams/demo",
                headers=bearer,
                json={"changes": {"limits": {"rpm": rpm}}, "reason": "probe", "base_version": base},
            )
            assert patched.status_code == 200, patched.text
            written = patched.json()["version"]
            shown = http.get("/admin/policy", headers=bearer).json()
            assert shown["version"] == written, f"round {round_}: wrote {written}, read {shown}"
            assert shown["bundle"]["teams"]["demo"]["limits"]["rpm"] == rpm
            usage = http.get("/admin/teams/demo/usage", headers=bearer).json()
            assert rpm in _limits_of(usage), usage


def _limits_of(view: object) -> list[int]:
    """Every `limit` number in a usage view, wherever it sits."""
    found: list[int] = []
    if isinstance(view, dict):
        for key, value in view.items():
            if key == "limit" and isinstance(value, int):
                found.append(value)
            else:
                found += _limits_of(value)
    elif isinstance(view, list):
        for item in view:
            found += _limits_of(item)
    return found
