"""`gateway serve --admin-port`: the admin plane on a listener of its own, off the one
that teams reach."""

from __future__ import annotations

import httpx2 as httpx

from tests.support.processes import free_port, run_gateway
from tests.support.serving import serve_process


def _admin_token(tmp_path) -> str:
    done = run_gateway("token", "--team", "demo", "--scope", "gateway:admin", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


def test_admin_plane_answers_only_on_the_admin_port(tmp_path):
    """/admin answers on --admin-port; the teams' port says 404 for /admin and /finance,
    and the admin port does not serve the teams' API."""
    admin_port = free_port()
    with serve_process(tmp_path, args=("--admin-port", str(admin_port))) as server:
        bearer = {"Authorization": f"Bearer {_admin_token(tmp_path)}"}
        admin = f"http://127.0.0.1:{admin_port}"
        with httpx.Client() as http:
            assert http.get(f"{admin}/admin/policy", headers=bearer).status_code == 200
            for path in ("/admin/policy", "/admin/clients", "/finance/usage", "/admin"):
                off = http.get(f"{server.origin}{path}", headers=bearer)
                assert off.status_code == 404, path
                assert off.json()["error"]["code"] == "not_found", path
                assert off.headers["x-request-id"]
            # The teams' API stays on the teams' port.
            chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            assert http.post(f"{admin}/v1/chat/completions", json=chat).status_code == 404
            assert http.get(f"{admin}/v1/models", headers=bearer).status_code == 404
            assert http.post(f"{server.origin}/v1/chat/completions", json=chat).status_code == 401
            # Probes and the OpenAPI document answer on both.
            for origin in (admin, server.origin):
                assert http.get(f"{origin}/healthz").status_code == 200
                assert http.get(f"{origin}/readyz").status_code == 200
            assert http.get(f"{admin}/openapi.json").status_code == 200
            # /metrics (every team's names, models and cost, no token) on the admin port
            # only (probe p23: the teams' port served it to anyone).
            assert http.get(f"{admin}/metrics").status_code == 200
            assert http.get(f"{server.origin}/metrics").status_code == 404


def test_without_admin_port_the_admin_plane_is_on_the_main_port(tmp_path):
    """No --admin-port: /admin is served where everything else is (needs gateway:admin)."""
    with serve_process(tmp_path) as server, httpx.Client(base_url=server.origin) as http:
        bearer = {"Authorization": f"Bearer {_admin_token(tmp_path)}"}
        assert http.get("/admin/policy", headers=bearer).status_code == 200
        assert http.get("/admin/policy").status_code == 401


def test_admin_port_equal_to_the_port_is_refused(tmp_path):
    """--admin-port equal to --port stops `serve` with a message naming both settings."""
    done = run_gateway("serve", "--port", "18080", "--admin-port", "18080", cwd=tmp_path)
    assert done.returncode == 2
    assert "GATEWAY_ADMIN_PORT (--admin-port) must differ from GATEWAY_PORT" in done.stderr


def test_admin_port_out_of_range_is_refused(tmp_path):
    """GATEWAY_ADMIN_PORT=70000 stops `serve` with the allowed range."""
    done = run_gateway("serve", cwd=tmp_path, env={"GATEWAY_ADMIN_PORT": "70000"})
    assert done.returncode == 2
    assert "must be from 1 to 65535 (got 70000)" in done.stderr
