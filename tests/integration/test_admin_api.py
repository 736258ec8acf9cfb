"""The admin API (gateway/api/admin.py) and /openapi.json over HTTP, as an admin's tools use them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from starlette.routing import Route

from gateway.app import build_app
from gateway.policy.compiled import Budget, BudgetPeriod, user_budgets
from gateway.settings import Settings
from tests.support.admin import ADMIN_POLICY, Admin
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import GATEWAY, free_port

POLICY = ADMIN_POLICY


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, POLICY) as gateway:
        yield gateway


@pytest.fixture
async def admin(gw: RunningGateway, http: aiohttp.ClientSession) -> Admin:
    token = await gw.token(team="demo", scopes=["gateway:admin"], subject="alice@example.com")
    return Admin(gw.origin, http, token)


ADMIN_CALLS = [
    ("GET", "/admin/policy", None),
    ("PUT", "/admin/policy", {"bundle": {}, "reason": "", "base_version": 1}),
    ("PATCH", "/admin/teams/search", {"changes": {}, "reason": "", "base_version": 1}),
    ("GET", "/admin/policy/versions", None),
    ("GET", "/admin/policy/versions/1", None),
    ("GET", "/admin/policy/diff?from=1&to=1", None),
    ("POST", "/admin/policy/rollback", {"version": 1}),
    ("GET", "/admin/audit", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
async def test_no_token_is_401_and_no_admin_scope_is_403(
    gw: RunningGateway, http: aiohttp.ClientSession, method: str, path: str, body: Any
) -> None:
    """Every admin path: 401 without a token, 403 insufficient_scope with an invoke-only one."""
    status, answer = await Admin(gw.origin, http, None).call(method, path, body)
    assert status == 401 and answer["error"]["type"] == "authentication_error"
    invoker = Admin(gw.origin, http, await gw.token(scopes=["gateway:invoke"]))
    status, answer = await invoker.call(method, path, body)
    assert status == 403
    assert (answer["error"]["type"], answer["error"]["code"]) == (
        "permission_error",
        "insufficient_scope",
    )


async def test_get_policy_is_the_running_version_as_written(admin: Admin) -> None:
    status, running = await admin.call("GET", "/admin/policy")
    assert status == 200
    assert set(running) == {"version", "parent", "author", "created_at", "reason", "hash", "bundle"}
    assert (running["version"], running["author"]) == (1, "bootstrap")
    assert running["bundle"]["teams"]["search"] == {"models": ["small", "large"]}


async def test_put_applies_a_bundle_enforced_within_2_s(gw: RunningGateway, admin: Admin) -> None:
    """A new bundle becomes version 2, authored by the token's subject, enforced at once."""
    client = await gw.openai(team="search")
    _, running = await admin.call("GET", "/admin/policy")
    bundle = running["bundle"]
    bundle["teams"]["search"]["models"] = ["small"]
    status, applied = await admin.call(
        "PUT", "/admin/policy", {"bundle": bundle, "reason": "narrow", "base_version": 1}
    )
    assert status == 200, applied
    assert (applied["version"], applied["changed"], applied["author"]) == (
        2,
        True,
        "alice@example.com",
    )
    started = time.monotonic()
    while True:
        try:
            await client.chat.completions.create(
                model="large", messages=[{"role": "user", "content": "hi"}]
            )
        except openai.PermissionDeniedError:
            break
        assert time.monotonic() - started < 2, "not enforced within 2 s"
        await asyncio.sleep(0.02)
    status, same = await admin.call(
        "PUT", "/admin/policy", {"bundle": bundle, "reason": "again", "base_version": 2}
    )
    assert (status, same["version"], same["changed"]) == (200, 2, False)


async def test_put_of_the_running_bundle_on_a_stale_base_version_is_409(admin: Admin) -> None:
    """SPEC §5: a base_version that is not the running one is 409, even for an unchanged bundle."""
    _, running = await admin.call("GET", "/admin/policy")
    bundle = running["bundle"]
    bundle["teams"]["search"]["models"] = ["small"]
    status, _ = await admin.call(
        "PUT", "/admin/policy", {"bundle": bundle, "reason": "narrow", "base_version": 1}
    )
    assert status == 200
    status, answer = await admin.call(
        "PUT", "/admin/policy", {"bundle": bundle, "reason": "again", "base_version": 1}
    )
    assert status == 409, answer
    assert answer["error"]["code"] == "policy_conflict"
    status, answer = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": {"models": ["small"]}, "base_version": 1}
    )
    assert status == 409, answer


async def test_put_with_a_stale_base_version_is_409(admin: Admin) -> None:
    _, running = await admin.call("GET", "/admin/policy")
    bundle = running["bundle"]
    status, answer = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": {"models": ["small"]}, "base_version": 1}
    )
    assert status == 200
    status, answer = await admin.call(
        "PUT", "/admin/policy", {"bundle": bundle, "reason": "", "base_version": 1}
    )
    assert status == 409
    assert answer["error"]["code"] == "policy_conflict"
    assert answer["error"]["param"] == "base_version"
    assert (
        "base_version 1 is not the running policy (version 2 by alice@example.com"
        in (answer["error"]["message"])
    )
    assert "with base_version 2" in answer["error"]["message"]


async def test_put_an_invalid_bundle_is_400_listing_every_error(admin: Admin) -> None:
    bundle = {
        "providers": {"demo": {"type": "mock"}},
        "models": {"m": {"deployments": [{"provider": "gone", "model": "x"}]}},
        "teams": {"search": {"models": ["ghost"], "guardrails": ["nope"]}},
    }
    status, answer = await admin.call(
        "PUT", "/admin/policy", {"bundle": bundle, "reason": "", "base_version": 1}
    )
    assert status == 400
    error = answer["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_policy")
    fields = sorted(e["field"] for e in error["errors"])
    assert fields == [
        "models.m.deployments[0].provider",
        "teams.search.guardrails[0]",
        "teams.search.models[0]",
    ]
    assert all(e["location"] == "bundle" for e in error["errors"])
    assert "(3 errors)" in error["message"] and "unknown model 'ghost'" in error["message"]
    _, running = await admin.call("GET", "/admin/policy")
    assert running["version"] == 1


async def test_put_refuses_an_integer_the_policy_files_cannot_hold(admin: Admin) -> None:
    """Past 64 bits (signed) the YAML reader refuses an integer: the API refuses it too,
    naming the field, so every version exports and applies back (probe p17: 10**19 was
    stored, then the watched folder and `export | check` were invalid for ever)."""
    bundle = {
        "providers": {"demo": {"type": "mock"}},
        "models": {"m": {"deployments": [{"provider": "demo", "model": "x"}]}},
        "teams": {"search": {"models": ["m"], "budgets": [{"period": "week", "tokens": 10**19}]}},
    }
    status, answer = await admin.call(
        "PUT", "/admin/policy", {"bundle": bundle, "reason": "", "base_version": 1}
    )
    assert status == 400
    error = answer["error"]
    assert (error["code"], error["param"]) == ("invalid_policy", "teams.search.budgets[0].tokens")
    assert "integer out of range" in error["message"]
    _, running = await admin.call("GET", "/admin/policy")
    assert running["version"] == 1


async def test_put_lists_schema_and_reference_errors_together(admin: Admin) -> None:
    """A schema error in one team does not hide an unknown model in another (SPEC §5)."""
    bundle = {
        "providers": {"demo": {"type": "mock"}},
        "models": {"m": {"deployments": [{"provider": "demo", "model": "x"}]}},
        "teams": {
            "search": {"models": ["m"], "limits": {"rpm": 0}},
            "demo": {"models": ["ghost"]},
        },
    }
    status, answer = await admin.call(
        "PUT", "/admin/policy", {"bundle": bundle, "reason": "", "base_version": 1}
    )
    assert status == 400
    fields = sorted(e["field"] for e in answer["error"]["errors"])
    assert fields == ["teams.demo.models[0]", "teams.search.limits.rpm"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"reason": "", "base_version": 1}, "bundle"),
        ({"bundle": [], "base_version": 1}, "bundle"),
        ({"bundle": {}}, "base_version"),
        ({"bundle": {}, "base_version": "1"}, "base_version"),
        ({"bundle": {}, "base_version": 1, "colour": "red"}, "colour"),
    ],
)
async def test_a_malformed_body_is_400_naming_the_field(
    admin: Admin, body: dict[str, Any], param: str
) -> None:
    status, answer = await admin.call("PUT", "/admin/policy", body)
    assert status == 400 and answer["error"]["param"] == param


async def test_patch_team_changes_one_team_and_unknown_teams_are_404(admin: Admin) -> None:
    status, applied = await admin.call(
        "PATCH",
        "/admin/teams/search",
        {"changes": {"limits": {"rpm": 60}}, "reason": "cap", "base_version": 1},
    )
    assert status == 200
    assert applied["bundle"]["teams"]["search"] == {
        "models": ["small", "large"],
        "limits": {"rpm": 60},
    }
    status, answer = await admin.call(
        "PATCH", "/admin/teams/ghost", {"changes": {}, "base_version": 2}
    )
    assert (status, answer["error"]["code"]) == (404, "not_found")
    status, answer = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": {"models": ["ghost"]}, "base_version": 2}
    )
    assert status == 400 and answer["error"]["errors"][0]["field"] == "teams.search.models[0]"


async def test_patch_team_sets_per_user_budgets_of_any_period_and_unit(
    admin: Admin, gw: RunningGateway
) -> None:
    """Each user's weekly tokens and monthly USD, set by PATCH, are in force at once; a
    second day-tokens budget beside tokens_per_day is a 400 at its place, no new version."""
    per_user = {
        "tokens_per_day": 500,
        "budgets": [{"period": "week", "tokens": 2000}, {"period": "month", "usd": 5}],
    }
    status, applied = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": {"per_user": per_user}, "base_version": 1}
    )
    assert status == 200, applied
    assert applied["bundle"]["teams"]["search"]["per_user"] == per_user
    assert user_budgets(gw.services.policy.current().teams["search"].per_user) == (
        Budget(BudgetPeriod.DAY, 500, None),
        Budget(BudgetPeriod.WEEK, 2000, None),
        Budget(BudgetPeriod.MONTH, None, 5.0),
    )
    twice = {"per_user": {"budgets": [{"period": "day", "tokens": 9}]}}  # merged: beside 500
    status, answer = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": twice, "base_version": 2}
    )
    assert status == 400, answer
    (error,) = answer["error"]["errors"]
    assert error["field"] == "teams.search.per_user.budgets"
    assert "tokens_per_day and budgets[0] are both day tokens budgets" in error["message"]
    _, running = await admin.call("GET", "/admin/policy")
    assert running["version"] == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("clients", ["evil"]), ("guardrails", None), ("cache", {"ttl_s": 60}), ("log_content", True)],
)
async def test_patch_team_changes_only_quotas_limits_and_models(
    admin: Admin, field: str, value: Any
) -> None:
    """Another team field is a 400 naming it and the way to change it; no new version."""
    status, answer = await admin.call(
        "PATCH",
        "/admin/teams/search",
        {"changes": {"limits": {"rpm": 60}, field: value}, "base_version": 1},
    )
    assert status == 400, answer
    error = answer["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", f"changes.{field}")
    assert "PUT /admin/policy" in error["message"] and f"'{field}'" in error["message"]
    _, running = await admin.call("GET", "/admin/policy")
    assert running["version"] == 1


@pytest.mark.parametrize(("field", "value"), [("nonsense", 1), ("Models", ["small"])])
async def test_patch_team_names_an_unknown_field_as_its_param(
    admin: Admin, field: str, value: Any
) -> None:
    """A name no team has is a 400 whose param is `changes.<name>`; no new version."""
    status, answer = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": {field: value}, "base_version": 1}
    )
    assert status == 400, answer
    error = answer["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", f"changes.{field}")
    assert f"'{field}'" in error["message"] and "models" in error["message"]
    _, running = await admin.call("GET", "/admin/policy")
    assert running["version"] == 1


async def test_versions_diff_rollback_and_audit(admin: Admin) -> None:
    """History newest first, one version, a diff, a rollback, and the audit of both changes."""
    await admin.call(
        "PATCH",
        "/admin/teams/search",
        {"changes": {"models": ["small"]}, "reason": "narrow", "base_version": 1},
    )
    status, listed = await admin.call("GET", "/admin/policy/versions")
    assert status == 200 and listed["object"] == "list"
    assert [v["version"] for v in listed["data"]] == [2, 1]
    assert "bundle" not in listed["data"][0]
    status, one = await admin.call("GET", "/admin/policy/versions/1")
    assert status == 200 and one["bundle"]["teams"]["search"]["models"] == ["small", "large"]
    status, missing = await admin.call("GET", "/admin/policy/versions/9")
    assert (status, missing["error"]["code"]) == (404, "policy_version_not_found")
    status, diff = await admin.call("GET", "/admin/policy/diff?from=1&to=2")
    assert status == 200 and diff["from"] == 1 and "-    - large\n" in diff["diff"]
    status, bad = await admin.call("GET", "/admin/policy/diff?from=1")
    assert (status, bad["error"]["param"]) == (400, "to")
    for query, param in (("from=9&to=1", "from"), ("from=1&to=9", "to")):
        status, gone = await admin.call("GET", f"/admin/policy/diff?{query}")
        assert (status, gone["error"]["param"]) == (404, param)  # the field that named it
    status, back = await admin.call(
        "POST", "/admin/policy/rollback", {"version": 1, "reason": "undo"}
    )
    assert (status, back["version"], back["changed"]) == (200, 3, True)
    status, audit = await admin.call("GET", "/admin/audit")
    assert status == 200
    rollback, patch, bootstrap = audit["data"]
    assert (rollback["action"], rollback["actor"], rollback["reason"]) == (
        "policy.rollback",
        "alice@example.com",
        "undo",
    )
    assert patch["target"] == "teams.search"
    assert patch["before"] == {"version": 1, "teams": {"search": {"models": ["small", "large"]}}}
    assert patch["after"] == {"version": 2, "teams": {"search": {"models": ["small"]}}}
    assert bootstrap["action"] == "policy.bootstrap"


async def test_openapi_documents_every_admin_and_oauth_route(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GET /openapi.json (no token) covers each admin, finance and OAuth route, and its
    refs resolve."""
    async with http.get(
        f"{gw.origin}/openapi.json", headers={"x-request-id": "mine-1"}
    ) as response:
        assert response.status == 200
        assert response.headers["x-request-id"] == "mine-1"  # as every answer
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    app = build_app(Settings())
    served = {
        (method, route.path.replace("{version:int}", "{version}"))
        for route in app.routes
        if isinstance(route, Route)
        and route.path.startswith(("/admin", "/finance", "/oauth", "/.well-known"))
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert served <= documented, served - documented
    assert documented <= served, documented - served
    schemas = document["components"]["schemas"]
    refs = set(_refs(document))
    assert refs and all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs)
    jsonschema = pytest.importorskip("jsonschema")
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


# Two replicas on one PostgreSQL -------------------------------------------------------------


@contextmanager
def replica(tmp_path: Path, env: dict[str, str], name: str) -> Iterator[str]:
    """A `gateway serve` process on its own port; yields its origin."""
    port = free_port()
    log = (tmp_path / f"{name}.log").open("w")
    process = subprocess.Popen(
        [GATEWAY, "serve", "--port", str(port), "--policies", str(tmp_path / "policies")],
        cwd=tmp_path,
        env={**env, "GATEWAY_ACCESS_LOG": "off"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


async def wait_until_up(http: aiohttp.ClientSession, origin: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{origin}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{origin} did not come up")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_change_through_one_replica_is_enforced_by_the_other_within_2_s(
    database_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Two `gateway serve` on one PostgreSQL: PATCH on A, B refuses the model within 2 s."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(POLICY)
    # Replicas sharing a database share one issuer (else it follows each one's port).
    env = {
        **os.environ,
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_ISSUER_URL": "http://gateway.test",
    }

    def mint(*args: str) -> str:
        result = subprocess.run(
            [GATEWAY, "token", *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    with replica(tmp_path, env, "a") as a, replica(tmp_path, env, "b") as b:
        await wait_until_up(http, a)
        await wait_until_up(http, b)
        admin_a = Admin(
            a, http, mint("--team", "demo", "--subject", "ops", "--scope", "gateway:admin")
        )
        client_b = openai.AsyncOpenAI(
            base_url=f"{b}/v1", api_key=mint("--team", "search"), max_retries=0
        )
        try:
            await client_b.chat.completions.create(
                model="large", messages=[{"role": "user", "content": "hi"}]
            )
            _, running = await admin_a.call("GET", "/admin/policy")
            status, _ = await admin_a.call(
                "PATCH",
                "/admin/teams/search",
                {"changes": {"models": ["small"]}, "base_version": running["version"]},
            )
            assert status == 200
            changed_at = time.monotonic()
            while True:
                try:
                    await client_b.chat.completions.create(
                        model="large", messages=[{"role": "user", "content": "hi"}]
                    )
                except openai.PermissionDeniedError as denied:
                    assert denied.body["code"] == "model_not_allowed"  # type: ignore[index]
                    break
                assert time.monotonic() - changed_at < 2, "replica B did not pick it up in 2 s"
                await asyncio.sleep(0.02)
            print(f"replica B enforced the change after {time.monotonic() - changed_at:.3f} s")
        finally:
            await client_b.close()


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ("small", "changes"),
        (["models"], "changes"),
    ],
)
async def test_a_body_part_of_the_wrong_kind_is_named_in_json_words(
    admin: Admin, changes: Any, param: str
) -> None:
    """An object expected: the 400 says so, not pydantic's "valid dictionary or instance
    of LimitsSpec" (Python's words, a class the caller never saw)."""
    status, answer = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": changes, "base_version": 1}
    )
    assert status == 400, answer
    assert answer["error"]["param"] == param
    assert answer["error"]["message"] == f"Invalid '{param}': expected an object."


@pytest.mark.parametrize("changes", [{"limits": 7}, {"per_user": "x"}])
async def test_a_policy_section_of_the_wrong_kind_names_no_python_class(
    admin: Admin, changes: Any
) -> None:
    """A team's `limits` must be a mapping: the policy error says that, not pydantic's
    "…or instance of LimitsSpec"."""
    status, answer = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": changes, "base_version": 1}
    )
    assert status == 400, answer
    message = answer["error"]["message"]
    assert "expected a mapping (key: value pairs)" in message, message
    assert "Spec" not in message and "instance of" not in message, message


async def test_a_rollback_naming_a_stale_base_version_is_a_conflict(
    gw: RunningGateway, admin: Admin
) -> None:
    """Admin A decides on version 2 to roll back to 1; B changes the policy first (3):
    A's rollback with base_version 2 is a 409 and B's change stays; with 3 it applies;
    without a base_version it applies to whatever runs."""
    change = {"changes": {"limits": {"rpm": 91}}, "reason": "a", "base_version": 1}
    assert (await admin.call("PATCH", "/admin/teams/search", change))[0] == 200
    change = {"changes": {"limits": {"rpm": 4242}}, "reason": "b", "base_version": 2}
    assert (await admin.call("PATCH", "/admin/teams/search", change))[0] == 200
    stale = {"version": 1, "reason": "undo", "base_version": 2}
    status, refused = await admin.call("POST", "/admin/policy/rollback", stale)
    assert (status, refused["error"]["code"]) == (409, "policy_conflict")
    status, now = await admin.call("GET", "/admin/policy")
    assert now["version"] == 3
    assert now["bundle"]["teams"]["search"]["limits"]["rpm"] == 4242
    for body in ({**stale, "base_version": 3}, {"version": 2, "reason": "again"}):
        status, back = await admin.call("POST", "/admin/policy/rollback", body)
        assert (status, back["changed"]) == (200, True)
    status, wrong = await admin.call(
        "POST", "/admin/policy/rollback", {"version": 1, "base_version": "5"}
    )
    assert (status, wrong["error"]["param"]) == (400, "base_version")


async def test_listing_a_client_created_for_another_team_is_warned_of(admin: Admin) -> None:
    """A client of this gateway carries the team it was created for: listed under another
    team it is billed to its own all the same, so the change says so (a revoked client,
    an external client id and a client listed under its own team are no warning)."""
    status, demo_client = await admin.call("POST", "/admin/clients", {"team": "demo"})
    assert status == 201, demo_client
    status, search_client = await admin.call("POST", "/admin/clients", {"team": "search"})
    assert status == 201, search_client
    _, gone = await admin.call("POST", "/admin/clients", {"team": "demo"})
    assert (await admin.call("DELETE", f"/admin/clients/{gone['client_id']}"))[0] == 200
    _, running = await admin.call("GET", "/admin/policy")
    bundle = running["bundle"]
    listed = [demo_client["client_id"], search_client["client_id"], gone["client_id"], "idp-app"]
    bundle["teams"]["search"]["clients"] = listed
    put = {"bundle": bundle, "reason": "clients", "base_version": running["version"]}
    status, applied = await admin.call("PUT", "/admin/policy", put)
    assert status == 200, applied
    (warning,) = applied["warnings"]
    assert warning.startswith(f"teams.search.clients lists '{demo_client['client_id']}'")
    assert "created for team 'demo'" in warning
