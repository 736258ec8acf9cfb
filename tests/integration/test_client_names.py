"""A client's name never forges a line of `gateway clients list` (README: values "with
control characters escaped ... so no line is forged"): refused with control characters at
the API and in `clients create`, and escaped in the table for rows already stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from gateway.auth.clients import ClientRegistry
from gateway.db import create_engine
from tests.support.admin import ADMIN_POLICY, Admin
from tests.support.gateway import running_gateway
from tests.support.processes import run_gateway

FORGED_ROW = "c-forged  search  -  gateway:admin  2026-12-05T13:57:49Z  active"
BREAKING = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("character", BREAKING, ids=[f"U+{ord(c):04X}" for c in BREAKING])
async def test_the_admin_api_refuses_a_client_name_with_a_control_character(
    tmp_path: Path, character: str
) -> None:
    """400 invalid_request_error naming `name`; no client is created."""
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw, aiohttp.ClientSession() as http:
        admin = Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))
        name = f"x{character}{FORGED_ROW}"
        status, body = await admin.call("POST", "/admin/clients", {"team": "demo", "name": name})
        assert status == 400, body
        error = body["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", "name"), error
        assert "control character" in error["message"]
        assert character not in error["message"]
        _, listed = await admin.call("GET", "/admin/clients")
    assert listed["data"] == []


def database(tmp_path: Path) -> dict[str, str]:
    return {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db"}


def test_clients_create_refuses_a_name_with_a_control_character(tmp_path: Path) -> None:
    """Exit 2 naming --name; nothing is created."""
    env = database(tmp_path)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(ADMIN_POLICY)
    assert run_gateway("migrate", cwd=tmp_path, env=env).returncode == 0
    name = f"x\n{FORGED_ROW}"
    created = run_gateway(
        "clients", "create", "--team", "demo", "--name", name, cwd=tmp_path, env=env
    )
    assert created.returncode == 2, created.stderr
    assert created.stdout == ""
    assert "--name" in created.stderr and "control character" in created.stderr
    listed = run_gateway("clients", "list", "--json", cwd=tmp_path, env=env)
    assert listed.stdout.strip() == "[]", listed.stdout


def test_clients_list_escapes_a_stored_name_so_no_row_is_forged(tmp_path: Path) -> None:
    """A name stored before the refusal (written past the edges) shows as `\\n` in one row."""
    env = database(tmp_path)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(ADMIN_POLICY)
    assert run_gateway("migrate", cwd=tmp_path, env=env).returncode == 0

    async def store() -> None:
        engine = create_engine(env["GATEWAY_DATABASE_URL"])
        try:
            await ClientRegistry(engine).create(
                "demo", f"x\n{FORGED_ROW}\u2028\x1b[2J", ["gateway:invoke"], "test"
            )
        finally:
            await engine.dispose()

    asyncio.run(store())
    listed = run_gateway("clients", "list", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2, listed.stdout  # the header and the one client
    assert f"x\\n{FORGED_ROW}\\u2028\\x1b[2J" in lines[1]
    assert "\x1b" not in listed.stdout
