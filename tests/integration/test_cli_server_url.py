"""`gateway usage --server` as operators type it: `127.0.0.1:PORT` without a scheme reaches
the server (http:// assumed on this host, as curl does); a remote host without one, or a
value that is no URL, is refused with one `error:` line (exit 2), never "no server answered"."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.processes import free_port, run_gateway
from tests.support.serving import serve_process

ENV = {"GATEWAY_REDIS_URL": "", "GATEWAY_ACCESS_LOG": "off"}


def test_usage_reaches_a_server_named_without_a_scheme(tmp_path: Path) -> None:
    """`--server 127.0.0.1:PORT` and `--server localhost:PORT` ask that server, as http://."""
    base = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_PORT", "GATEWAY_ADMIN_PORT")}
    with serve_process(tmp_path, base_env={**base, **ENV}, port_as_flag=True) as server:
        # The shell's port points elsewhere: only --server can find this server.
        shell = {**ENV, "GATEWAY_PORT": str(free_port())}
        for written in (f"127.0.0.1:{server.port}", f"localhost:{server.port}/"):
            shown = run_gateway(
                "usage", "demo", "--json", "--server", written, cwd=tmp_path, env=shell
            )
            assert shown.returncode == 0, shown.stderr
            assert "no server answered" not in shown.stderr, shown.stderr
            view = json.loads(shown.stdout)
            assert view["team"] == "demo"


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("gateway.example.com:8080", "write http://gateway.example.com:8080 or https://"),
        ("10.1.2.3:8080", "write http://10.1.2.3:8080 or https://"),
        ("ftp://127.0.0.1:8080", "is not a server URL"),
        ("127.0.0.1:port", "is not a server URL"),
        ("", "is not a server URL"),
    ],
)
def test_usage_refuses_a_server_it_cannot_read_as_a_url(
    tmp_path: Path, written: str, says: str
) -> None:
    """A remote host without a scheme, or no URL at all: one `error:` line, exit 2."""
    shown = run_gateway("usage", "demo", "--server", written, cwd=tmp_path, env=ENV)
    assert shown.returncode == 2, shown.stderr
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --server "), lines
    assert says in lines[0]
    assert shown.stdout == ""
    assert not (tmp_path / "gateway.db").exists()  # refused before the database


class _Foreign(BaseHTTPRequestHandler):
    """Another service on the port `usage` asks: 200 JSON that is no usage view."""

    def do_GET(self) -> None:
        body = b'{"keys": []}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.mark.parametrize("as_json", [True, False])
def test_usage_refuses_an_answer_that_is_no_usage_view(tmp_path: Path, as_json: bool) -> None:
    """Another service (or an older program) answering 200 on that port: one `error:`
    line and exit 1, in both modes; never its JSON printed as the team's usage."""
    assert run_gateway("migrate", cwd=tmp_path, env=ENV).returncode == 0
    with ThreadingHTTPServer(("127.0.0.1", 0), _Foreign) as foreign:
        threading.Thread(target=foreign.serve_forever, daemon=True).start()
        try:
            flags = ["--json"] if as_json else []
            server = f"http://127.0.0.1:{foreign.server_address[1]}"
            shown = run_gateway("usage", "demo", *flags, "--server", server, cwd=tmp_path, env=ENV)
        finally:
            foreign.shutdown()
    assert shown.returncode == 1, (shown.stdout, shown.stderr)
    assert shown.stdout == ""
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert (
        lines[0]
        == f"error: the server at {server} did not answer with a usage view (is it a gateway?)"
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("",), "can never be a team"),
        (("demo", "--user", ""), "error: --user is empty"),
        (("demo", "--user", "  "), "error: --user is empty"),
    ],
)
def test_usage_refuses_an_empty_team_or_user_in_one_line(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    assert run_gateway("migrate", cwd=tmp_path, env=ENV).returncode == 0
    shown = run_gateway("usage", *args, "--server", "127.0.0.1:9", cwd=tmp_path, env=ENV)
    assert shown.returncode == 2, shown.stderr
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
