"""Bad input to the admin API and `gateway policy` answered plainly, never a 500 or a lost edit.

Out-of-range version numbers, team names that cannot be a URL segment, unknown
client parameters, credentials written into `api_base`, and an export over a
folder with unapplied edits; over real HTTP, real subprocesses, SQLite and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.policy.service import PolicyService, VersionNotFound
from gateway.policy.versions import MAX_VERSION
from tests.support.admin import Admin, admin_client
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import GATEWAY, run_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
  meta-llama/Llama-3-70b: {deployments: [{provider: demo, model: mock-large}]}
teams:
  demo: {models: ["*"]}
  search: {models: [small, meta-llama/Llama-3-70b]}
"""
BUNDLE = {
    "providers": {"demo": {"type": "mock"}},
    "models": {
        "small": {"deployments": [{"provider": "demo", "model": "mock-small"}]},
        "meta-llama/Llama-3-70b": {"deployments": [{"provider": "demo", "model": "mock-large"}]},
    },
    "teams": {"demo": {"models": ["*"]}, "search": {"models": ["small"]}},
}
SECRET = "sk-live-ABC123"
HUGE = 99999999999999999999  # past 64 bits: SQLite's driver overflowed on it


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, POLICY) as gateway:
        yield gateway


@pytest.fixture
async def admin(gw: RunningGateway) -> AsyncIterator[Admin]:
    token = await gw.token(team="demo", scopes=["gateway:admin"], subject="alice@example.com")
    async with admin_client(gw.origin, token) as client:
        yield client


def assert_openai_error(body: Any, code: str | None, param: str | None) -> None:
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        code,
        param,
    ), error


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`gateway ARGS` on a SQLite database in `cwd`."""
    return run_gateway(
        *args, cwd=cwd, env={"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{cwd}/gateway.db"}
    )


# Version numbers no version can have --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/admin/policy/versions/{HUGE}", None),
        ("GET", f"/admin/policy/versions/{2**31}", None),
        ("GET", "/admin/policy/versions/0", None),
        ("GET", f"/admin/policy/diff?from=1&to={HUGE}", None),
        ("GET", f"/admin/policy/diff?from={HUGE}&to=1", None),
        ("GET", "/admin/policy/diff?from=-1&to=1", None),
        ("POST", "/admin/policy/rollback", {"version": 2**63}),
        ("POST", "/admin/policy/rollback", {"version": 2**64 - 1}),
        ("POST", "/admin/policy/rollback", {"version": -(2**63)}),
    ],
)
async def test_an_out_of_range_version_is_404_policy_version_not_found(
    admin: Admin, method: str, path: str, body: Any
) -> None:
    """A version number past any integer column is an unknown version: 404, not a 500."""
    status, answer = await admin.call(method, path, body)
    assert status == 404, answer
    # the field that named the missing version: a diff's `from` or `to`, else `version`
    named = "version"
    if "diff?" in path:
        named = "from" if path.endswith("&to=1") else "to"
    assert_openai_error(answer, "policy_version_not_found", named)
    assert "There is no policy version" in answer["error"]["message"]


async def test_a_json_version_past_64_bits_is_a_400_naming_it(admin: Admin) -> None:
    """JSON numbers past 64 bits parse as floats, so they are no integer: 400, not a 500."""
    status, answer = await admin.call("POST", "/admin/policy/rollback", {"version": HUGE})
    assert status == 400, answer
    assert_openai_error(answer, None, "version")


async def test_versions_past_the_column_are_unknown_on_both_backends(engine: AsyncEngine) -> None:
    """SQLite and PostgreSQL (a 32-bit INTEGER there) answer VersionNotFound, not a driver error."""
    service = PolicyService(engine, os.environ)
    await service.apply(BUNDLE, author="alice", reason="", base_version=None)
    assert (await service.get(1)).version == 1
    for number in (MAX_VERSION, MAX_VERSION + 1, 2**63, HUGE, 0, -1):
        with pytest.raises(VersionNotFound):
            await service.get(number)
    with pytest.raises(VersionNotFound):
        await service.rollback(HUGE, author="alice", reason="")
    assert [v.version for v in await service.history()] == [1]


def test_cli_rollback_to_an_out_of_range_version_says_no_such_version(tmp_path: Path) -> None:
    """`gateway policy rollback N` and `export --version N`: one plain line, exit 1."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(POLICY)
    assert run_cli("migrate", cwd=tmp_path).returncode == 0
    assert run_cli("policy", "apply", "policies", cwd=tmp_path).returncode == 0
    for args in (
        ("policy", "rollback", str(HUGE)),
        ("policy", "export", "out", "--version", str(HUGE)),
    ):
        refused = run_cli(*args, cwd=tmp_path)
        assert refused.returncode == 1, refused.stdout
        assert refused.stderr == f"error: There is no policy version {HUGE}.\n"


# Team names are one URL path segment --------------------------------------------------------


async def test_a_team_named_with_a_slash_is_refused_naming_the_field(admin: Admin) -> None:
    """PUT a team `ml/research`: 400 invalid_policy saying why; the running version stays."""
    bundle = {**BUNDLE, "teams": {**BUNDLE["teams"], "ml/research": {"models": ["small"]}}}
    status, answer = await admin.call("PUT", "/admin/policy", {"bundle": bundle, "base_version": 1})
    assert status == 400, answer
    assert_openai_error(answer, "invalid_policy", "teams.ml/research.[key]")
    [issue] = answer["error"]["errors"]
    assert issue["field"] == "teams.ml/research.[key]"
    assert "a team name may not contain '/'" in issue["message"]
    status, running = await admin.call("GET", "/admin/policy")
    assert (status, running["version"]) == (200, 1)


async def test_a_team_using_a_slashed_model_alias_can_be_patched(admin: Admin) -> None:
    """Model aliases keep their slash; PATCH /admin/teams/search still works with one."""
    status, applied = await admin.call(
        "PATCH",
        "/admin/teams/search",
        {"changes": {"models": ["meta-llama/Llama-3-70b"]}, "base_version": 1},
    )
    assert status == 200, applied
    assert applied["bundle"]["teams"]["search"]["models"] == ["meta-llama/Llama-3-70b"]


# Creating OAuth clients ---------------------------------------------------------------------


async def test_create_client_refuses_an_unknown_parameter(admin: Admin) -> None:
    """`scope` for `scopes` is a 400 naming it; no client is created with other scopes."""
    status, answer = await admin.call(
        "POST", "/admin/clients", {"team": "demo", "scope": ["gateway:admin"]}
    )
    assert status == 400, answer
    assert_openai_error(answer, None, "scope")
    assert answer["error"]["message"] == "Unknown parameter: 'scope'."
    _, listed = await admin.call("GET", "/admin/clients")
    assert listed["data"] == []


async def test_create_client_for_a_team_not_in_the_policy_warns_in_the_reply(
    admin: Admin,
) -> None:
    """201 as the CLI creates it, with the CLI's warning in `warning`; none for a known team."""
    status, created = await admin.call("POST", "/admin/clients", {"team": "ghost"})
    assert status == 201, created
    assert created["client_secret"] and created["team"] == "ghost"
    assert created["warning"] == (
        "team 'ghost' is not in the running policy version 1; "
        "inference calls with this client's tokens (gateway:invoke) will be refused until it is"
    )
    status, known = await admin.call("POST", "/admin/clients", {"team": "demo"})
    assert status == 201 and "warning" not in known


# Credentials in api_base --------------------------------------------------------------------


async def test_credentials_in_api_base_are_refused_and_never_stored(admin: Admin) -> None:
    """A `user:secret@host` api_base: 400 naming the field; not in the policy, audit or reply."""
    bundle = {
        **BUNDLE,
        "providers": {
            **BUNDLE["providers"],
            "local": {
                "type": "openai-compatible",
                "api_base": f"https://svc:{SECRET}@vllm.internal/v1",
            },
        },
    }
    status, answer = await admin.call("PUT", "/admin/policy", {"bundle": bundle, "base_version": 1})
    assert status == 400, answer
    assert_openai_error(answer, "invalid_policy", "providers.local.api_base")
    [issue] = answer["error"]["errors"]
    assert issue["field"] == "providers.local.api_base"
    assert "api_key: ${ENV_VAR}" in issue["message"]
    assert SECRET not in json.dumps(answer)
    _, running = await admin.call("GET", "/admin/policy")
    _, audit = await admin.call("GET", "/admin/audit")
    assert running["version"] == 1
    assert SECRET not in json.dumps(running) and SECRET not in json.dumps(audit)


# Export over a folder with unapplied edits --------------------------------------------------


def test_export_refuses_a_folder_with_unapplied_edits(tmp_path: Path) -> None:
    """Apply, edit, export: exit 1 naming the folder and the way out; the edit survives."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "policy.yaml").write_text(POLICY)
    assert run_cli("migrate", cwd=tmp_path).returncode == 0
    assert run_cli("policy", "apply", "mine", cwd=tmp_path).returncode == 0
    edited = POLICY + "  ops: {models: [small]}  # not applied yet\n"
    (mine / "policy.yaml").write_text(edited)

    refused = run_cli("policy", "export", "mine", cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr.startswith("error: mine has changed since policy version 1")
    assert "`gateway policy diff mine`" in refused.stderr
    assert "`gateway policy apply mine`" in refused.stderr
    assert "--force" in refused.stderr
    assert (mine / "policy.yaml").read_text() == edited

    forced = run_cli("policy", "export", "mine", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert not (mine / "policy.yaml").exists()
    assert "ops" not in (mine / "teams.yaml").read_text()


def test_export_refusing_an_edited_folder_names_only_the_edited_file(tmp_path: Path) -> None:
    """An exported folder, one file of it edited: the refusal names that file, not all."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(POLICY)
    assert run_cli("migrate", cwd=tmp_path).returncode == 0
    assert run_cli("policy", "apply", "policies", cwd=tmp_path).returncode == 0
    assert run_cli("policy", "export", "out", cwd=tmp_path).returncode == 0
    teams = tmp_path / "out" / "teams.yaml"
    teams.write_text(teams.read_text() + "  ops: {models: [small]}\n")

    refused = run_cli("policy", "export", "out", cwd=tmp_path)

    assert refused.returncode == 1, refused.stdout
    assert "(edited: teams.yaml)" in refused.stderr, refused.stderr
    assert "models.yaml" not in refused.stderr


def test_export_replaces_a_folder_holding_no_edit(tmp_path: Path) -> None:
    """An applied folder left as it was, or an exported one, is replaced without --force."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "policy.yaml").write_text(POLICY)
    assert run_cli("migrate", cwd=tmp_path).returncode == 0
    assert run_cli("policy", "apply", "mine", cwd=tmp_path).returncode == 0
    exported = run_cli("policy", "export", "mine", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in mine.iterdir()) == [
        ".policy-version",
        "models.yaml",
        "providers.yaml",
        "teams.yaml",
    ]
    again = run_cli("policy", "export", "mine", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_export_refuses_an_edit_that_no_longer_loads(tmp_path: Path) -> None:
    """A half-finished edit (invalid YAML) is an edit too: refused without --force."""
    assert run_cli("policy", "export", "out", cwd=tmp_path).returncode == 1  # no version yet
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(POLICY)
    assert run_cli("migrate", cwd=tmp_path).returncode == 0
    assert run_cli("policy", "apply", "policies", cwd=tmp_path).returncode == 0
    assert run_cli("policy", "export", "out", cwd=tmp_path).returncode == 0
    (tmp_path / "out" / "teams.yaml").write_text("teams:\n  demo: {models: [\n")
    refused = run_cli("policy", "export", "out", cwd=tmp_path)
    assert refused.returncode == 1 and "out has changed since policy version 1" in refused.stderr
    assert (tmp_path / "out" / "teams.yaml").read_text() == "teams:\n  demo: {models: [\n"


# A version the gateway cannot enforce ----------------------------------------------------


async def test_get_policy_tells_a_stored_version_from_the_enforced_one(
    gw: RunningGateway, admin: Admin, tmp_path: Path
) -> None:
    """Applied from a shell that has a ${VAR} the gateway lacks: stored, not enforced, and said so."""
    os.environ.pop("ONLY_ON_THE_LAPTOP_KEY", None)
    edit = tmp_path / "edit"
    env = {**os.environ, "GATEWAY_DATABASE_URL": gw.settings.database_url}
    await asyncio.to_thread(
        subprocess.run, [GATEWAY, "policy", "export", str(edit)], env=env, check=True, timeout=60
    )
    providers = edit / "providers.yaml"
    providers.write_text(
        providers.read_text() + '  oa: {type: openai, api_key: "${ONLY_ON_THE_LAPTOP_KEY}"}\n'
    )
    applied = await asyncio.to_thread(
        subprocess.run,
        [GATEWAY, "policy", "apply", str(edit)],
        env={**env, "ONLY_ON_THE_LAPTOP_KEY": "sk-x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert applied.returncode == 0, applied.stderr
    status, body = await admin.call("GET", "/admin/policy")
    assert status == 200
    assert (body["version"], body["newest_version"]) == (1, 2)
    assert "ONLY_ON_THE_LAPTOP_KEY" in body["newest_problem"]
    assert "oa" not in body["bundle"]["providers"]
    assert gw.services.policy.version == 1


# Paging back through history and the audit log -------------------------------------------


async def test_versions_and_audit_page_back_with_before(admin: Admin) -> None:
    """More than one page: `has_more`, then `before=<last_id>` reaches the oldest entry."""
    for rpm in range(1, 5):  # versions 2..5, five audit entries with the bootstrap
        status, _ = await admin.call(
            "PATCH",
            "/admin/teams/search",
            {"changes": {"limits": {"rpm": rpm}}, "base_version": rpm},
        )
        assert status == 200
    for path, key in (("/admin/policy/versions", "version"), ("/admin/audit", "id")):
        seen: list[int] = []
        before = ""
        while True:
            status, page = await admin.call("GET", f"{path}?limit=2{before}")
            assert status == 200, page
            seen += [item[key] for item in page["data"]]
            if not page["has_more"]:
                break
            assert page["last_id"] == seen[-1]
            before = f"&before={page['last_id']}"
        assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 5, path
    status, answer = await admin.call("GET", "/admin/audit?before=abc")
    assert status == 400 and answer["error"]["param"] == "before"
