"""Tokens and clients for names the gateway would never accept are refused (SPEC §1, §5).

`gateway token --subject ''` printed a token the gateway answers with 401, and a
team name the policy schema refuses (`''`, `'pp x'`, `'pp/x'`) got a token or a
client with at most a warning, though no team of that name can ever exist.
Real subprocesses on SQLite, and the admin API over real HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.admin import ADMIN_POLICY, admin_client
from tests.support.gateway import running_gateway
from tests.support.processes import run_gateway

IMPOSSIBLE_TEAMS = ["", "pp x", "pp/x", " demo", "-x", "a\nb"]


def run(tmp_path: Path, *args: str):  # type: ignore[no-untyped-def]
    return run_gateway(
        *args,
        cwd=tmp_path,
        env={"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gateway.db"},
    )


def test_token_refuses_an_empty_subject(tmp_path: Path) -> None:
    """Exit 2 naming --subject, and no token printed."""
    done = run(tmp_path, "token", "--team", "demo", "--subject", "")
    assert done.returncode == 2, done.stdout
    assert "--subject must not be empty" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("team", IMPOSSIBLE_TEAMS)
def test_token_refuses_a_team_no_policy_can_have(tmp_path: Path, team: str) -> None:
    """Exit 2 saying why the name can never be a team; no token printed."""
    done = run(tmp_path, "token", "--team", team)
    assert done.returncode == 2, done.stdout
    assert f"team {team!r} can never be a team" in done.stderr
    assert done.stdout == ""


def test_token_for_a_possible_team_not_in_the_policy_still_only_warns(tmp_path: Path) -> None:
    """A valid name the policy lacks (yet) is the warning it was: the policy may add it."""
    done = run(tmp_path, "token", "--team", "a.b:c@d-e_f")
    assert done.returncode == 0, done.stderr
    assert "can never be a team" not in done.stderr
    assert done.stdout.strip()


@pytest.mark.parametrize("team", ["pp/x", "pp x", ""])
def test_clients_create_refuses_a_team_no_policy_can_have(tmp_path: Path, team: str) -> None:
    """Exit 2 and no client, consistently for a slash, a space and an empty name."""
    done = run(tmp_path, "clients", "create", "--team", team)
    assert done.returncode == 2, done.stdout
    assert "team" in done.stderr
    assert done.stdout == ""


async def test_the_admin_api_refuses_a_client_for_a_team_no_policy_can_have(
    tmp_path: Path,
) -> None:
    """POST /admin/clients with team 'pp/x': 400 naming `team`, and no client listed."""
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw:
        token = await gw.token(team="demo", scopes=["gateway:admin"])
        async with admin_client(gw.origin, token) as admin:
            status, body = await admin.call("POST", "/admin/clients", {"team": "pp/x"})
            _, listed = await admin.call("GET", "/admin/clients")
    assert status == 400, body
    assert body["error"]["param"] == "team"
    assert "can never be a team" in body["error"]["message"]
    assert listed["data"] == []
