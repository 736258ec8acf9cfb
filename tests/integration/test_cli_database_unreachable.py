"""A CLI command whose PostgreSQL cannot be opened: refused, a database that does not
exist, a wrong password, a server that never answers. One plain line, exit 1: what
failed, where (host:port and database, never the password), and what to check.

Before, each printed SQLAlchemy's own text: the dialect's class name, the driver's
words without host or database, and a second line linking to SQLAlchemy's docs.
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.hung_postgres import HungPostgres
from tests.support.processes import free_port, run_gateway

PASSWORD = "s3cret-pw"  # must never be printed
COMMANDS = [
    ("usage", "demo", "--server", "http://127.0.0.1:9"),
    ("report", "usage", "--month", "2026-12"),
    ("policy", "apply", "policies"),
    ("policy", "history"),
    ("clients", "list"),
    ("clients", "create", "--team", "demo"),
    ("keys", "list"),
    ("token", "--team", "demo"),
    ("migrate",),
]


def _run(url: str, command: tuple[str, ...], tmp_path: Path) -> tuple[int, list[str], float]:
    if not (tmp_path / "policies").exists():
        shutil.copytree(Path(__file__).parents[2] / "policies", tmp_path / "policies")
    env = {"GATEWAY_DATABASE_URL": url, "GATEWAY_REDIS_URL": ""}
    started = time.monotonic()
    done = run_gateway(*command, cwd=tmp_path, env=env)
    took = time.monotonic() - started
    assert done.stdout == "", done.stdout
    return done.returncode, done.stderr.strip().splitlines(), took


def _assert_one_plain_line(lines: list[str], *needles: str) -> None:
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("error: "), line
    assert PASSWORD not in line and "sqlalchemy" not in line.lower(), line
    for needle in needles:
        assert needle in line, line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_refused_connection_names_host_port_and_what_to_check(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Nothing listening: 'connection refused' at host:port, check the server and the URL."""
    port = free_port()
    url = f"postgresql+asyncpg://gw:{PASSWORD}@127.0.0.1:{port}/gwdb"
    code, lines, _ = _run(url, command, tmp_path)
    assert code == 1, lines
    _assert_one_plain_line(
        lines, f"127.0.0.1:{port}", '"gwdb"', "connection refused", "GATEWAY_DATABASE_URL"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_database_that_does_not_exist_is_named(
    tmp_path: Path, postgres_url: str, command: tuple[str, ...]
) -> None:
    """The server answers, the database is not there: the name, host:port, create it."""
    name = f"gateway_missing_{secrets.token_hex(4)}"
    server = make_url(postgres_url)
    url = server.set(database=name).render_as_string(hide_password=False)
    code, lines, _ = _run(url, command, tmp_path)
    assert code == 1, lines
    _assert_one_plain_line(
        lines, f'"{name}" at {server.host}:{server.port} does not exist', "GATEWAY_DATABASE_URL"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_wrong_password_says_so_without_printing_it(
    tmp_path: Path, postgres_url: str, command: tuple[str, ...]
) -> None:
    """The server refuses the login: which user at which host:port, never the password."""
    server = make_url(postgres_url)
    url = server.set(password=PASSWORD).render_as_string(hide_password=False)
    code, lines, _ = _run(url, command, tmp_path)
    assert code == 1, lines
    _assert_one_plain_line(
        lines,
        f'user "{server.username}"',
        f"{server.host}:{server.port}",
        "password",
        "GATEWAY_DATABASE_URL",
    )


@pytest.mark.parametrize("answers_handshake", [False, True], ids=["silent", "after-login"])
@pytest.mark.parametrize(
    "command", [("policy", "history"), ("report", "usage", "--month", "2026-12"), ("migrate",)]
)
def test_a_server_that_never_answers_fails_within_the_connect_timeout(
    tmp_path: Path, command: tuple[str, ...], answers_handshake: bool
) -> None:
    """A hung server (or a pooler whose server is gone): 'did not answer' within the 5 s
    connect timeout, not after a statement timeout per set-up query, nor never (migrate)."""
    with HungPostgres(answers_handshake=answers_handshake) as hung:
        url = f"postgresql+asyncpg://gw:{PASSWORD}@127.0.0.1:{hung.port}/gwdb"
        code, lines, took = _run(url, command, tmp_path)
    assert code == 1, lines
    _assert_one_plain_line(
        lines, f"127.0.0.1:{hung.port}", "did not answer", "GATEWAY_DATABASE_URL"
    )
    assert took < 20, took  # 5 s, once; the old code took 30 s per set-up query
