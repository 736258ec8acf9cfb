"""What an operator sees for settings and databases the gateway cannot use: one plain
line naming the problem and a non-zero exit, never a traceback and never a silent
misconfiguration."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.processes import run_gateway as run


@pytest.mark.parametrize(
    ("command", "env", "says"),
    [
        (("serve",), {"GATEWAY_PORT": "abc"}, "GATEWAY_PORT must be a whole number"),
        (("serve",), {"GATEWAY_PORT": "99999"}, "GATEWAY_PORT (--port) must be from 0 to 65535"),
        (("serve", "--port", "70000"), {}, "must be from 0 to 65535 (got 70000)"),
        (("serve",), {"GATEWAY_WORKERS": "0"}, "GATEWAY_WORKERS (--workers) must be from 1"),
        (("serve",), {"GATEWAY_MAX_BODY_BYTES": "-1"}, "GATEWAY_MAX_BODY_BYTES must be from 1"),
        (("serve",), {"GATEWAY_LOG_LEVEL": "nonsense"}, "GATEWAY_LOG_LEVEL must be one of"),
        (("token", "--team", "demo"), {"GATEWAY_TOKEN_TTL_S": "-5"}, "GATEWAY_TOKEN_TTL_S"),
        (("migrate",), {"GATEWAY_WORKERS": "x"}, "GATEWAY_WORKERS must be a whole number"),
        (
            ("serve",),
            {"GATEWAY_ACCESS_LOG": "/nonexistent/dir/access.log"},
            "GATEWAY_ACCESS_LOG: cannot write a file in /nonexistent/dir/",
        ),
        (
            ("serve",),
            {"GATEWAY_ACCESS_LOG": "/tmp"},
            "GATEWAY_ACCESS_LOG: /tmp is a folder, not a file",
        ),
        (("serve",), {"GATEWAY_REDIS_URL": "notredis"}, "GATEWAY_REDIS_URL must be a Redis URL"),
        (("serve",), {"GATEWAY_METRICS": "maybe"}, "GATEWAY_METRICS must be one of"),
        (("serve",), {"GATEWAY_MIGRATE_ON_START": "ja"}, "GATEWAY_MIGRATE_ON_START must be one"),
        (
            ("serve",),
            {"GATEWAY_DATABASE_URL": "sqlite+aiosqlite:////nonexistent/dir/g.db"},
            "GATEWAY_DATABASE_URL: the folder /nonexistent/dir/ of the SQLite file does not exist",
        ),
        (
            ("migrate",),
            {"GATEWAY_DATABASE_URL": "sqlite+aiosqlite:////nonexistent/dir/g.db"},
            "GATEWAY_DATABASE_URL: the folder /nonexistent/dir/ of the SQLite file does not exist",
        ),
        (
            ("serve",),
            {"GATEWAY_LEDGER_SPOOL_DIR": "/proc/no-such-spool"},
            "GATEWAY_LEDGER_SPOOL_DIR: the folder /proc/no-such-spool/ does not exist",
        ),
        (
            ("serve",),
            {"GATEWAY_HOST": "not..a..host"},
            "GATEWAY_HOST (--host): cannot resolve 'not..a..host' to an address",
        ),
        (
            ("serve", "--host", "192.0.2.1"),  # TEST-NET-1: never this host's
            {},
            "GATEWAY_HOST (--host): 192.0.2.1 is not an address of this host",
        ),
        (("serve",), {"GATEWAY_AUDIENCE": ""}, "GATEWAY_AUDIENCE must not be empty"),
        (("serve",), {"GATEWAY_AUDIENCE": "  "}, "GATEWAY_AUDIENCE must not be empty"),
        (("token", "--team", "demo"), {"GATEWAY_AUDIENCE": ""}, "GATEWAY_AUDIENCE must not"),
    ],
)
def test_a_setting_the_gateway_cannot_use_is_one_plain_line(
    tmp_path: Path, command: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    # Port 0 unless the case sets one: a refusal must not depend on 8080 being free.
    result = run(*command, cwd=tmp_path, env={"GATEWAY_PORT": "0", **env})
    assert result.returncode == 2, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "gateway.db").exists()  # refused before touching anything


def test_a_spool_folder_that_is_set_but_missing_is_not_made(tmp_path: Path) -> None:
    """GATEWAY_LEDGER_SPOOL_DIR names a mounted volume: a typo stops serve, exit 2."""
    spool = tmp_path / "no-such-volume" / "spool"
    result = run(
        "serve",
        cwd=tmp_path,
        env={"GATEWAY_PORT": "0", "GATEWAY_LEDGER_SPOOL_DIR": str(spool)},
        timeout=20,
    )
    assert result.returncode == 2, result.stderr
    assert f"GATEWAY_LEDGER_SPOOL_DIR: the folder {spool}/ does not exist" in result.stderr
    assert not spool.parent.exists() and not (tmp_path / "gateway.db").exists()


@pytest.mark.parametrize("which", ["--port", "--admin-port"])
def test_a_port_in_use_stops_serve_before_it_writes_anything(tmp_path: Path, which: str) -> None:
    """A port another process listens on: one line naming the setting, exit 2, no database
    (so no issuer recorded for a server that never ran)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if which == "--port":
            result = run("serve", "--port", str(port), cwd=tmp_path, timeout=20)
            setting = "GATEWAY_PORT (--port)"
        else:
            result = run(
                "serve", "--port", "0", "--admin-port", str(port), cwd=tmp_path, timeout=20
            )
            setting = "GATEWAY_ADMIN_PORT (--admin-port)"
    assert result.returncode == 2, result.stderr
    assert f"error: {setting}: port {port} on 127.0.0.1 is in use" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "gateway.db").exists()
    assert not (tmp_path / "gateway.db.ledger-spool").exists()


def test_serve_without_migrating_an_empty_database_says_to_migrate(tmp_path: Path) -> None:
    """And makes nothing: no empty SQLite file (which a later `policy apply` would take
    for a database and migrate), no spool folder."""
    result = run("serve", "--no-migrate", cwd=tmp_path)
    assert result.returncode == 1
    assert "the database has no schema yet: run `gateway migrate`" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "gateway.db").exists()
    assert not (tmp_path / "gateway.db.ledger-spool").exists()


def test_a_database_migrated_by_a_newer_gateway_is_named_as_such(tmp_path: Path) -> None:
    assert run("migrate", cwd=tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0099_future'")
    for command in (("migrate",), ("serve", "--no-migrate")):
        result = run(*command, cwd=tmp_path)
        assert result.returncode == 1
        assert "revision 0099_future, which this gateway does not know" in result.stderr
        assert "a newer gateway has migrated it" in result.stderr


def test_the_usual_postgresql_url_spellings_work(tmp_path: Path, postgres_url: str) -> None:
    """`postgresql://…?sslmode=disable` as libpq and most tools write it."""
    plain = make_url(postgres_url).set(drivername="postgresql")
    url = plain.render_as_string(hide_password=False) + "?sslmode=disable"
    result = run("migrate", cwd=tmp_path, env={"GATEWAY_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    short = url.replace("postgresql://", "postgres://", 1)
    assert run("migrate", cwd=tmp_path, env={"GATEWAY_DATABASE_URL": short}).returncode == 0


UNSET_KEY_BUNDLE = """\
providers:
  up: {type: openai, api_key: "${PROBE_UPSTREAM_KEY}"}
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: m}]}
teams:
  a: {models: [small], limits: {tpm: 1000}}
"""


@pytest.mark.parametrize("problem", ["an unset variable", "a value past a bound"])
def test_serve_refuses_a_running_version_it_cannot_compile_and_says_what_to_do(
    tmp_path: Path, problem: str
) -> None:
    """The database's running version must compile here: an upgrade whose schema is
    stricter, or a shell without a secret the version names, is a plain refusal listing
    each error and the way out, not a start-up traceback; a corrected apply serves."""
    (tmp_path / "pol").mkdir()
    (tmp_path / "pol" / "p.yaml").write_text(UNSET_KEY_BUNDLE)
    assert run("migrate", cwd=tmp_path).returncode == 0
    applied = run("policy", "apply", "pol", cwd=tmp_path, env={"PROBE_UPSTREAM_KEY": "sk-x"})
    assert applied.returncode == 0, applied.stderr
    env = {"PROBE_UPSTREAM_KEY": "sk-x"}
    if problem == "an unset variable":
        env = {}
        says = "PROBE_UPSTREAM_KEY"
    else:  # a version stored by an older gateway, before limits had upper bounds
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            db.execute(
                "UPDATE policy_versions SET bundle = replace(bundle, '1000}', '10000000000000000}')"
            )
        says = "teams.a.limits.tpm: Input should be less than or equal to 100000000000"
    result = run("serve", "--port", "0", "--policies", "pol", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "error: policy version 1: " in result.stderr and says in result.stderr
    assert "gateway policy apply DIR" in result.stderr
    assert "Traceback" not in result.stderr
