"""Bidi and other format characters (Unicode `Cf`: U+202E right-to-left override, U+2066
isolate, U+200F mark…) are treated like control characters: refused in a client's name
(`clients create --name`, POST /admin/clients) and escaped in the tables that show
people's text (`clients list`, `policy history`), so no row is visually reordered."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from gateway.auth.clients import ClientRegistry
from gateway.db import create_engine
from tests.support.admin import ADMIN_POLICY, Admin
from tests.support.gateway import running_gateway
from tests.support.processes import run_gateway

FORMAT = ["\u202a", "\u202e", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c", "\ufeff"]
IDS = [f"U+{ord(c):04X}" for c in FORMAT]


@pytest.mark.parametrize("character", FORMAT, ids=IDS)
async def test_the_admin_api_refuses_a_client_name_with_a_format_character(
    tmp_path: Path, character: str
) -> None:
    """400 invalid_request_error naming `name`, the character escaped; no client created."""
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw, aiohttp.ClientSession() as http:
        admin = Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))
        name = f"evil{character}txt.exe"
        status, body = await admin.call("POST", "/admin/clients", {"team": "demo", "name": name})
        assert status == 400, body
        error = body["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", "name"), error
        assert repr(character)[1:-1] in error["message"], error
        assert character not in error["message"]
        _, listed = await admin.call("GET", "/admin/clients")
    assert listed["data"] == []


def _database(tmp_path: Path) -> dict[str, str]:
    env = {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db"}
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(ADMIN_POLICY)
    assert run_gateway("migrate", cwd=tmp_path, env=env).returncode == 0
    return env


def test_clients_create_refuses_a_name_with_a_bidi_override(tmp_path: Path) -> None:
    """Exit 2 naming --name and the character (escaped); nothing is created."""
    env = _database(tmp_path)
    created = run_gateway(
        "clients", "create", "--team", "demo", "--name", "\u202eevil", cwd=tmp_path, env=env
    )
    assert created.returncode == 2, created.stderr
    assert created.stdout == ""
    assert "--name" in created.stderr and "\\u202e" in created.stderr, created.stderr
    assert "\u202e" not in created.stderr
    listed = run_gateway("clients", "list", "--json", cwd=tmp_path, env=env)
    assert listed.stdout.strip() == "[]", listed.stdout


def test_clients_list_escapes_a_stored_name_with_format_characters(tmp_path: Path) -> None:
    """A name stored before the refusal shows its bidi characters as `\\u202e`; --json
    keeps the real text."""
    env = _database(tmp_path)
    name = "".join(FORMAT) + "evil"

    async def store() -> None:
        engine = create_engine(env["GATEWAY_DATABASE_URL"])
        try:
            await ClientRegistry(engine).create("demo", name, ["gateway:invoke"], "test")
        finally:
            await engine.dispose()

    asyncio.run(store())
    listed = run_gateway("clients", "list", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2, listed.stdout
    assert "".join(repr(c)[1:-1] for c in FORMAT) + "evil" in lines[1], lines[1]
    assert not any(c in listed.stdout for c in FORMAT)
    as_json = run_gateway("clients", "list", "--json", cwd=tmp_path, env=env)
    assert json.loads(as_json.stdout)[0]["name"] == name


async def test_policy_history_escapes_a_token_subjects_bidi_override(tmp_path: Path) -> None:
    """An admin-API change by a token whose subject holds U+202E: `policy history` shows
    the author with `\\u202e`, never the raw override."""
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw, aiohttp.ClientSession() as http:
        token = await gw.token(scopes=["gateway:admin"], subject="x\u202eevil")
        admin = Admin(gw.origin, http, token)
        status, body = await admin.call(
            "PATCH",
            "/admin/teams/search",
            {"changes": {"limits": {"rpm": 5}}, "reason": "r\u2067tl", "base_version": 1},
        )
        assert status == 200, body
        env = {"GATEWAY_DATABASE_URL": gw.settings.database_url}
        history = await asyncio.to_thread(run_gateway, "policy", "history", cwd=tmp_path, env=env)
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert lines[1].startswith("2 "), history.stdout
    assert "x\\u202eevil" in lines[1] and lines[1].endswith("r\\u2067tl"), lines[1]
    assert "\u202e" not in history.stdout and "\u2067" not in history.stdout
