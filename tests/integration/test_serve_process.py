"""`gateway serve` as an operator and a client meet it: 405 with Allow, request ids on
probes, and a clean exit after SIGTERM."""

from __future__ import annotations

import signal

import httpx2 as httpx

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
