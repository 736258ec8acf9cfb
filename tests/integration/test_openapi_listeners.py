"""`GET /openapi.json` with `--admin-port`: each listener's document lists what it serves.

It was one document on both: the teams' port listed every /admin path (404 there), the
admin port /oauth/token and /.well-known (404 there).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx2 as httpx

from tests.support.processes import free_port
from tests.support.serving import serve_process


def _served_on(http: httpx.Client, origin: str, path: str, method: str) -> bool:
    """Whether the listener serves `path` (any answer but the unknown-path 404)."""
    answer = http.request(method, origin + re.sub(r"\{[^}]+\}", "1", path))
    return not (answer.status_code == 404 and "Unknown path" in answer.text)


def test_each_listener_documents_only_the_paths_it_serves(tmp_path: Path) -> None:
    """Teams' port: OAuth and discovery, no /admin; admin port: /admin and /finance only;
    every path a document lists answers on its listener."""
    admin_port = free_port()
    with (
        serve_process(tmp_path, args=("--admin-port", str(admin_port))) as server,
        httpx.Client(timeout=10) as http,
    ):
        origins = {"teams": server.origin, "admin": f"http://127.0.0.1:{admin_port}"}
        paths = {
            name: http.get(f"{origin}/openapi.json").json()["paths"]
            for name, origin in origins.items()
        }
        for name, documented in paths.items():
            for path, operations in documented.items():
                for method in operations:
                    assert _served_on(http, origins[name], path, method), (name, method, path)
    assert "/oauth/token" in paths["teams"] and "/.well-known/jwks.json" in paths["teams"]
    assert not [path for path in paths["teams"] if path.startswith("/admin")]
    assert "/admin/policy" in paths["admin"] and "/finance/reports/usage" in paths["admin"]
    assert all(path.startswith(("/admin", "/finance")) for path in paths["admin"]), paths["admin"]
