"""A version's reason is bounded, and shown on one line (SPEC §1, §5).

Reasons are kept with every version and quoted in conflicts: a 100 KB one was
accepted and echoed in every later 409. Over real HTTP and real subprocesses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin import ADMIN_POLICY, Admin, admin_client
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import run_gateway

BUNDLE = {
    "providers": {"demo": {"type": "mock"}},
    "models": {"small": {"deployments": [{"provider": "demo", "model": "mock-small"}]}},
    "teams": {"demo": {"models": ["*"]}},
}
MAX_REASON_CHARS = 1000  # the documented limit
TOO_LONG = "x" * (MAX_REASON_CHARS + 1)


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ADMIN_POLICY) as gateway:
        yield gateway


@pytest.fixture
async def admin(gw: RunningGateway) -> AsyncIterator[Admin]:
    token = await gw.token(team="demo", scopes=["gateway:admin"])
    async with admin_client(gw.origin, token) as client:
        yield client


def cli(tmp_path: Path, *args: str) -> Any:
    return run_gateway(
        *args,
        cwd=tmp_path,
        env={"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gateway.db"},
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/admin/policy", {"bundle": BUNDLE, "base_version": 1}),
        ("PATCH", "/admin/teams/search", {"changes": {"models": ["small"]}, "base_version": 1}),
        ("POST", "/admin/policy/rollback", {"version": 1}),
    ],
)
async def test_a_reason_over_the_limit_is_a_400_naming_reason(
    admin: Admin, method: str, path: str, body: dict[str, Any]
) -> None:
    """1,001 characters: 400 param `reason`, nothing written; 1,000 are accepted."""
    status, refused = await admin.call(method, path, {**body, "reason": TOO_LONG})
    assert status == 400, refused
    assert refused["error"]["param"] == "reason"
    assert f"at most {MAX_REASON_CHARS} characters" in refused["error"]["message"]
    assert len(refused["error"]["message"]) < 200
    _, versions = await admin.call("GET", "/admin/policy/versions")
    assert [v["version"] for v in versions["data"]] == [1]
    if method != "POST":  # a rollback to the running version writes nothing anyway
        status, done = await admin.call(method, path, {**body, "reason": "y" * MAX_REASON_CHARS})
        assert status == 200, done
        assert done["reason"] == "y" * MAX_REASON_CHARS


async def test_a_409_quotes_a_long_reason_cut(admin: Admin) -> None:
    """A conflict names the running version's reason, but never echoes all of it."""
    reason = "because " * 120  # 960 characters: allowed
    status, _ = await admin.call(
        "PATCH",
        "/admin/teams/search",
        {"changes": {"models": ["small"]}, "base_version": 1, "reason": reason},
    )
    assert status == 200
    status, conflict = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": {"models": ["large"]}, "base_version": 1}
    )
    assert status == 409
    message = conflict["error"]["message"]
    assert f"(cut, {len(reason)} characters)" in message
    assert reason not in message


def test_cli_refuses_a_reason_over_the_limit(tmp_path: Path) -> None:
    """`policy apply --reason` / `rollback --reason` too long: exit 2 naming --reason."""
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(ADMIN_POLICY)
    applied = cli(tmp_path, "policy", "apply", str(folder), "--reason", TOO_LONG)
    assert applied.returncode == 2, applied.stderr
    assert "--reason" in applied.stderr
    assert f"at most {MAX_REASON_CHARS} characters" in applied.stderr
    assert not (tmp_path / "gateway.db").exists()  # refused before any database work
    assert cli(tmp_path, "migrate").returncode == 0
    done = cli(tmp_path, "policy", "apply", str(folder), "--reason", "first")
    assert done.returncode == 0, done.stderr
    rolled = cli(tmp_path, "policy", "rollback", "1", "--reason", TOO_LONG)
    assert rolled.returncode == 2, rolled.stderr
    listed = cli(tmp_path, "policy", "history", "--json")
    assert [v["version"] for v in json.loads(listed.stdout)] == [1]


def test_history_shows_a_multiline_reason_on_one_row(tmp_path: Path) -> None:
    """A reason with a newline or an escape code: one row, version first; --json keeps it."""
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(ADMIN_POLICY)
    reason = "line1\nline2\r\x1b[31mred\u2028end"
    assert cli(tmp_path, "migrate").returncode == 0
    assert cli(tmp_path, "policy", "apply", str(folder), "--reason", reason).returncode == 0
    table = cli(tmp_path, "policy", "history")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 2, table.stdout
    assert lines[1].startswith("1 ")
    assert lines[1].endswith(r"line1\nline2\r\x1b[31mred\u2028end")
    listed = cli(tmp_path, "policy", "history", "--json")
    assert json.loads(listed.stdout)[0]["reason"] == reason
