"""The unknown-team warning of `gateway token`, `clients create` and `POST /admin/clients`
is true: only inference (`gateway:invoke`) is bound to a team of the policy, so only a
token or client with that scope is warned of, and the warning says inference is refused."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.support.admin import ADMIN_POLICY, Admin
from tests.support.gateway import running_gateway
from tests.support.processes import run_gateway

WARNED_TOKEN = (
    "warning: team 'nosuchteam' is not in the running policy version 1; inference calls "
    "with this token (gateway:invoke) will be refused until it is"
)
WARNED_CLIENT = (
    "team 'nosuchteam' is not in the running policy version 1; inference calls with "
    "this client's tokens (gateway:invoke) will be refused until it is"
)


async def test_an_admin_or_finance_token_of_an_unknown_team_works_and_is_not_warned_of(
    tmp_path: Path,
) -> None:
    """`token --team nosuchteam --scope gateway:admin` (or finance): no warning, and the
    admin API (or finance report) answers it; with gateway:invoke, the warning, and
    inference (GET /v1/models) is refused."""
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw, aiohttp.ClientSession() as http:
        env = {"GATEWAY_DATABASE_URL": gw.settings.database_url}
        minted = {}
        for scope in ("gateway:admin", "gateway:finance", "gateway:invoke"):
            done = run_gateway(
                "token", "--team", "nosuchteam", "--scope", scope, cwd=tmp_path, env=env
            )
            assert done.returncode == 0, done.stderr
            minted[scope] = done
        for scope in ("gateway:admin", "gateway:finance"):
            assert "warning" not in minted[scope].stderr, minted[scope].stderr
        assert minted["gateway:invoke"].stderr.strip().splitlines()[-1] == WARNED_TOKEN

        def bearer(scope: str) -> Admin:
            return Admin(gw.origin, http, minted[scope].stdout.strip().splitlines()[-1])

        status, body = await bearer("gateway:admin").call("GET", "/admin/policy")
        assert status == 200, body
        status, body = await bearer("gateway:finance").call(
            "GET", "/finance/reports/usage?month=2026-12&format=json"
        )
        assert status == 200, body
        status, body = await bearer("gateway:invoke").call("GET", "/v1/models")
        assert status == 401, body


def test_clients_create_warns_of_an_unknown_team_only_for_inference(tmp_path: Path) -> None:
    """`clients create --team nosuchteam --scope gateway:admin`: no warning; with the
    default scope (gateway:invoke), the warning that inference will be refused."""
    env = {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db"}
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(ADMIN_POLICY)
    assert run_gateway("migrate", cwd=tmp_path, env=env).returncode == 0
    assert run_gateway("policy", "apply", "policies", cwd=tmp_path, env=env).returncode == 0
    args = ("clients", "create", "--team", "nosuchteam")
    for scopes in (["gateway:admin"], ["gateway:finance"], ["gateway:admin", "gateway:finance"]):
        flags = [part for scope in scopes for part in ("--scope", scope)]
        done = run_gateway(*args, *flags, cwd=tmp_path, env=env)
        assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
    done = run_gateway(*args, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"warning: {WARNED_CLIENT}"


@pytest.mark.parametrize(
    ("scopes", "warned"),
    [
        (["gateway:admin"], False),
        (["gateway:finance"], False),
        (["gateway:admin", "gateway:finance"], False),
        (None, True),
        (["gateway:admin", "gateway:invoke"], True),
    ],
)
async def test_the_admin_api_warns_of_an_unknown_team_only_for_inference(
    tmp_path: Path, scopes: list[str] | None, warned: bool
) -> None:
    """201 either way; `warning` only when the client may call models."""
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw, aiohttp.ClientSession() as http:
        admin = Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))
        body = (
            {"team": "nosuchteam"} if scopes is None else {"team": "nosuchteam", "scopes": scopes}
        )
        status, created = await admin.call("POST", "/admin/clients", body)
    assert status == 201, created
    assert created.get("warning") == (WARNED_CLIENT if warned else None)
