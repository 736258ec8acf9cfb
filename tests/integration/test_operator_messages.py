"""What the CLI tells an operator: error counts, what migrate did, a bad database URL."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.support.processes import run_gateway


def test_policy_check_lists_every_error_with_a_grammatical_count(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.yaml").write_text(
        "providers:\n  demo: {type: mock, colour: red}\n"
        "models:\n  small: {deployments: [{provider: demo, model: m, weight: -1}]}\n"
        "teams:\n  demo: {models: ['*'], rpm: 3}\n"
    )
    many = run_gateway("policy", "check", str(bad), cwd=tmp_path)
    assert many.returncode == 1
    assert f"{bad}/a.yaml:2: providers.demo.colour: unknown key" in many.stderr
    assert f"{bad}/a.yaml:4: models.small.deployments[0].weight" in many.stderr
    assert f"{bad}/a.yaml:6: teams.demo.rpm: unknown key" in many.stderr
    assert "(3 errors)" in many.stderr
    (bad / "a.yaml").write_text("providers:\n  demo: {type: mock, colour: red}\n")
    one = run_gateway("policy", "check", str(bad), cwd=tmp_path)
    assert one.returncode == 1 and "(1 error)" in one.stderr and "errors)" not in one.stderr


def test_migrate_says_what_it_did(tmp_path: Path) -> None:
    env = {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/new.db"}
    first = run_gateway("migrate", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("migrated the new database to revision ")
    assert "already" not in first.stdout
    second = run_gateway("migrate", cwd=tmp_path, env=env)
    assert second.stdout.startswith("database is already at the newest revision")


@pytest.mark.parametrize(
    "command", [("serve",), ("migrate",), ("policy", "history"), ("policy", "rollback", "1")]
)
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("garbage", "is not a database URL"),
        ("mysql://u:hunter2@db/x", "mysql:// is not supported"),
        ("postgresql://u:hunter2@db:notaport/x", "is not a database URL"),
    ],
)
def test_a_bad_database_url_is_one_line_naming_the_setting_exit_2(
    tmp_path: Path, command: tuple[str, ...], url: str, says: str
) -> None:
    done = run_gateway(*command, cwd=tmp_path, env={"GATEWAY_DATABASE_URL": url})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: GATEWAY_DATABASE_URL"), lines
    assert says in lines[0] and "hunter2" not in done.stderr
    assert "sqlite+aiosqlite" in lines[0] and "postgresql+asyncpg" in lines[0]


@pytest.mark.parametrize("command", [("serve",), ("migrate",), ("token", "--team", "demo")])
def test_a_sqlite_url_naming_a_folder_is_one_line_exit_2(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A folder is no SQLite file: was a traceback, or 'does not exist' (probe p21)."""
    url = f"sqlite+aiosqlite:///{tmp_path}"
    done = run_gateway(*command, cwd=tmp_path, env={"GATEWAY_DATABASE_URL": url})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "names a folder" in lines[0], lines


READ_ONLY_COMMANDS = [
    ("report", "usage", "--month", "2026-01"),
    ("usage", "demo", "--server", "http://127.0.0.1:9"),
    ("policy", "history"),
    ("policy", "diff", "policies"),
    ("clients", "list"),
    ("keys", "list"),
]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS)
def test_a_read_only_command_on_a_mistyped_sqlite_path_fails_and_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A typo in the path is exit 1 naming the file, not an empty database reporting zero."""
    typo = tmp_path / "gatway.db"
    env = {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{typo}", "GATEWAY_REDIS_URL": ""}
    done = run_gateway(*command, cwd=tmp_path, env=env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"error: database {typo} does not exist" in done.stderr
    assert done.stdout == ""
    assert not typo.exists() and list(tmp_path.iterdir()) == []


WRITE_COMMANDS = [
    ("policy", "apply", "policies"),
    ("policy", "rollback", "1"),
    ("clients", "create", "--team", "demo"),
    ("clients", "revoke", "client_x"),
    ("keys", "rotate"),
]


@pytest.mark.parametrize("command", WRITE_COMMANDS)
def test_a_write_on_a_mistyped_sqlite_path_fails_and_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Only `migrate` and `serve` create a database: a write to a typo is exit 1 naming the
    file, not a success recorded in a new database no gateway serves."""
    shutil.copytree(Path(__file__).parents[2] / "policies", tmp_path / "policies")
    typo = tmp_path / "gatway.db"
    env = {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{typo}", "GATEWAY_REDIS_URL": ""}
    done = run_gateway(*command, cwd=tmp_path, env=env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"error: database {typo} does not exist: check GATEWAY_DATABASE_URL" in done.stderr
    assert done.stdout == ""
    assert [p.name for p in tmp_path.iterdir()] == ["policies"]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS)
def test_a_read_only_command_on_an_unmigrated_database_says_run_migrate(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A database file without the schema is exit 1 'not migrated', and stays unmigrated."""
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    env = {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{empty}", "GATEWAY_REDIS_URL": ""}
    done = run_gateway(*command, cwd=tmp_path, env=env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"error: database {empty} is not migrated" in done.stderr
    assert "gateway migrate" in done.stderr
    with sqlite3.connect(empty) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_report_reads_a_migrated_database_without_writing_it(tmp_path: Path) -> None:
    """After `gateway migrate`, the report runs (exit 0, a header line only)."""
    env = {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gw.db"}
    assert run_gateway("migrate", cwd=tmp_path, env=env).returncode == 0
    done = run_gateway("report", "usage", "--month", "2026-01", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("month,team,model,requests,errors,")
