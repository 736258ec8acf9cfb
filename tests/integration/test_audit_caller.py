"""The audit log tells an admin-API change from a CLI one whatever the token's subject
says: an API entry's `via` names the token's client_id, issuer and team; a CLI entry's
`via` is null; `actor` and `after` keep their shape."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.support.admin import ADMIN_POLICY, Admin
from tests.support.gateway import running_gateway
from tests.support.processes import run_gateway


async def test_a_subject_imitating_a_cli_author_is_told_apart(tmp_path: Path) -> None:
    """A client-credentials token whose subject is `root@vm` patches a team and creates
    and revokes a client: each entry's actor is `root@vm` and its `via` names the client,
    issuer and team; a CLI apply's and `clients create`'s entries have `via` null."""
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw, aiohttp.ClientSession() as http:
        root = Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))
        status, made = await root.call(
            "POST", "/admin/clients", {"team": "search", "scopes": ["gateway:admin"]}
        )
        assert status == 201, made
        async with http.post(
            f"{gw.origin}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "scope": "gateway:admin",
                "client_id": made["client_id"],
                "client_secret": made["client_secret"],
            },
        ) as answer:
            assert answer.status == 200, await answer.text()
            granted = (await answer.json())["access_token"]
        # An admin token minted with any subject, here one that reads like a CLI author.
        imitator = Admin(
            gw.origin,
            http,
            await gw.token(team="search", scopes=["gateway:admin"], subject="root@vm"),
        )
        status, patched = await imitator.call(
            "PATCH",
            "/admin/teams/search",
            {"changes": {"limits": {"rpm": 7}}, "base_version": 1},
        )
        assert status == 200, patched
        by_client = Admin(gw.origin, http, granted)
        status, other = await by_client.call("POST", "/admin/clients", {"team": "demo"})
        assert status == 201, other
        status, revoked = await by_client.call("DELETE", f"/admin/clients/{other['client_id']}")
        assert status == 200, revoked

        env = {"GATEWAY_DATABASE_URL": gw.settings.database_url}
        folder = tmp_path / "edited"
        folder.mkdir()
        (folder / "bundle.yaml").write_text(ADMIN_POLICY.replace("large]", "]"))
        for args in (
            ("policy", "apply", str(folder), "--force"),
            ("clients", "create", "--team", "demo", "--scope", "gateway:admin"),
        ):
            done = await asyncio.to_thread(run_gateway, *args, cwd=tmp_path, env=env)
            assert done.returncode == 0, done.stderr
        status, audit = await root.call("GET", "/admin/audit")
        assert status == 200, audit

    entries = {(e["action"], e["target"]): e for e in reversed(audit["data"])}
    issuer = gw.settings.issuer_url
    patch = entries[("policy.patch_team", "teams.search")]
    assert patch["actor"] == "root@vm"
    assert patch["via"] == {
        "channel": "admin-api",
        "client_id": "tests",
        "issuer": issuer,
        "team": "search",
    }
    assert patch["after"]["version"] == 2 and "_via" not in patch["after"]
    assert patch["after"]["teams"]["search"]["limits"] == {"rpm": 7}
    for action in ("client.create", "client.revoke"):
        entry = entries[(action, other["client_id"])]
        assert entry["via"] == {
            "channel": "admin-api",
            "client_id": made["client_id"],
            "issuer": issuer,
            "team": "search",
        }, entry
        assert entry["after"]["client_id"] == other["client_id"] and "_via" not in entry["after"]
    applied = next(e for e in audit["data"] if e["action"] == "policy.apply_files")
    cli_client = next(
        e for e in audit["data"] if e["action"] == "client.create" and e["via"] is None
    )
    assert applied["via"] is None
    # One CLI actor, user@host, whatever the command (clients said `cli:root`, probe p7).
    assert cli_client["actor"] == applied["actor"] and "@" in applied["actor"]
    assert applied["after"]["version"] == 3
