"""`gateway serve` as an operator and a client meet it: 405 with Allow, request ids on
probes, and a clean exit after SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import httpx2 as httpx

from tests.support.processes import GATEWAY
from tests.support.serving import serve_process


def test_405_lists_the_allowed_methods(tmp_path):
    """A wrong method gets 405 with `Allow` naming every method of the path."""
    with serve_process(tmp_path) as server, httpx.Client(base_url=server.origin) as http:
        cases = {
            "/v1/chat/completions": {"POST"},
            "/oauth/token": {"POST"},
            "/healthz": {"GET", "HEAD"},
            "/admin/clients": {"GET", "HEAD", "POST"},  # two routes share the path
        }
        for path, allowed in cases.items():
            reply = http.request("DELETE", path)
            assert reply.status_code == 405, path
            assert set(reply.headers["allow"].split(", ")) == allowed, path
            assert reply.json()["error"]["code"] == "method_not_allowed"


def test_probes_answer_with_a_request_id(tmp_path):
    """/healthz and /readyz carry x-request-id, echoing a sane one the caller sent."""
    with serve_process(tmp_path) as server, httpx.Client(base_url=server.origin) as http:
        for path in ("/healthz", "/readyz"):
            assert http.get(path).headers["x-request-id"].startswith("req_")
            echoed = http.get(path, headers={"x-request-id": "probe-1"})
            assert echoed.headers["x-request-id"] == "probe-1"


def test_sigterm_after_a_clean_drain_exits_0(tmp_path):
    """SIGTERM with nothing in flight: the server drains and exits 0, not 143."""
    with serve_process(tmp_path) as server:
        assert httpx.get(f"{server.origin}/healthz").status_code == 200
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0, server.stderr()


def test_every_line_serve_writes_to_stderr_is_json(tmp_path):
    """First start (example policy written), second start on the same database on another
    port (policy from the database, issuer changed): every stderr line is a JSON object."""
    logged: list[str] = []
    for _ in range(2):  # a new free port each time: the derived issuer changes too
        with serve_process(tmp_path) as server:
            assert httpx.get(f"{server.origin}/healthz").status_code == 200
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(60) == 0, server.stderr()
        logged.append(server.stderr())
    first, second = ([json.loads(line) for line in text.splitlines()] for text in logged)
    assert all(isinstance(line, dict) and line["level"] for line in first + second)
    assert any(line["msg"].startswith("wrote the example policy bundle") for line in first)
    # The example comes with its JSON Schema, as the repository's policies/ does; the
    # schema file is no policy edit (the second start enforces version 1 as it was).
    schema = json.loads((tmp_path / "policies" / "policy.schema.json").read_text())
    assert "$schema" in schema and "teams" in schema["properties"]
    assert second[0]["msg"].startswith("enforcing policy version 1 from the database")
    assert (second[0]["logger"], second[0]["policy_version"]) == ("gateway.serve", 1)
    assert any("last served with issuer" in line["msg"] for line in second)


def test_port_0_serves_on_a_free_port_and_names_it(tmp_path):
    """`serve --port 0`: the issuer it derives (its metadata, the tokens it mints) names
    the port it bound, not 0."""
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_PORT", "GATEWAY_ISSUER_URL")}
    err = (tmp_path / "serve.err").open("wb")
    process = subprocess.Popen(
        [GATEWAY, "serve", "--port", "0"], cwd=tmp_path, env=env, stdout=err, stderr=err
    )
    try:
        deadline, found = time.monotonic() + 60, None
        while found is None:
            assert process.poll() is None and time.monotonic() < deadline
            found = re.search(
                r"Uvicorn running on (http://127\.0\.0\.1:(\d+))",
                (tmp_path / "serve.err").read_text(),
            )
            time.sleep(0.2)
        origin, port = found.group(1), found.group(2)
        while not _healthy(origin):  # a refused connection too: say why if it died
            log = (tmp_path / "serve.err").read_text()
            assert process.poll() is None and time.monotonic() < deadline, log
            time.sleep(0.2)
        meta = httpx.get(f"{origin}/.well-known/oauth-authorization-server").json()
        assert meta["issuer"] == f"http://localhost:{port}" and port != "0"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        err.close()


def _healthy(origin: str) -> bool:
    try:
        return httpx.get(f"{origin}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
