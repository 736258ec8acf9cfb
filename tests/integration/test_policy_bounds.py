"""Policy names and URLs have upper bounds, and errors echo what a bundle says safely.

Over the admin API (real HTTP, SQLite) and `gateway policy check` (a real process): a
name or URL past its bound is refused naming the field, not stored as a version; a
value quoted in a message is cut to its first 100 characters; a control character
in a team's name is escaped in `param`, the message and the CLI's lines.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.policy.schema import MAX_LONG_NAME_CHARS, MAX_NAME_CHARS, MAX_URL_CHARS
from tests.support.admin import ADMIN_POLICY, Admin, admin_client
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import run_gateway

HUGE = 200_000


def bundle(**changes: Any) -> dict[str, Any]:
    """ADMIN_POLICY as JSON, with `changes` merged into its sections."""
    base: dict[str, Any] = {
        "providers": {"demo": {"type": "mock"}},
        "models": {
            "small": {"deployments": [{"provider": "demo", "model": "mock-small"}]},
            "large": {"deployments": [{"provider": "demo", "model": "mock-large"}]},
        },
        "teams": {"demo": {"models": ["*"]}, "search": {"models": ["small", "large"]}},
    }
    for section, value in changes.items():
        base[section] = {**base.get(section, {}), **value} if section != "auth" else value
    return base


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ADMIN_POLICY) as gateway:
        yield gateway


@pytest.fixture
async def admin(gw: RunningGateway) -> AsyncIterator[Admin]:
    token = await gw.token(scopes=["gateway:admin"], subject="alice@example.com")
    async with admin_client(gw.origin, token) as client:
        yield client


async def put(admin: Admin, body: dict[str, Any]) -> tuple[int, Any]:
    return await admin.call("PUT", "/admin/policy", {"bundle": body, "base_version": 1})


async def newest_version(admin: Admin) -> int:
    status, listed = await admin.call("GET", "/admin/policy/versions?limit=1")
    assert status == 200, listed
    return int(listed["data"][0]["version"])


@pytest.mark.parametrize("length", [HUGE, 200])
async def test_an_unknown_model_is_quoted_cut_to_100_characters(admin: Admin, length: int) -> None:
    """200 characters: within the alias bound, an unknown model; 200,000: past it too.
    Either way the name is quoted as its first 100 characters and its length."""
    name = "x" * length
    status, answer = await put(admin, bundle(teams={"search": {"models": [name]}}))
    assert status == 400, answer
    assert len(json.dumps(answer)) < 3000
    assert "x" * 101 not in json.dumps(answer)
    shown = f"unknown model '{'x' * 100}…' ({length} characters)"
    assert shown in answer["error"]["message"]
    assert any(e["message"] == shown for e in answer["error"]["errors"]), answer


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        (
            {"teams": {"t" * HUGE: {"models": ["small"]}}},
            f"teams.{'t' * 40}….[key]",
            f"a team name is at most {MAX_NAME_CHARS} characters (this one has {HUGE})",
        ),
        (
            {"auth": {"issuers": [{"issuer": "https://" + "a" * HUGE, "audience": "x"}]}},
            "auth.issuers[0].issuer",
            f"a URL is at most {MAX_URL_CHARS} characters",
        ),
        (
            {
                "auth": {
                    "issuers": [
                        {
                            "issuer": "https://idp",
                            "audience": "x",
                            "jwks_uri": "https://idp/" + "k" * MAX_URL_CHARS,
                        }
                    ]
                }
            },
            "auth.issuers[0].jwks_uri",
            f"a URL is at most {MAX_URL_CHARS} characters",
        ),
        (
            {
                "providers": {
                    "up": {
                        "type": "openai-compatible",
                        "api_base": "https://up.example/" + "v" * MAX_URL_CHARS,
                    }
                }
            },
            "providers.up.api_base",
            f"a URL is at most {MAX_URL_CHARS} characters",
        ),
        (
            {"providers": {"p" * (MAX_NAME_CHARS + 1): {"type": "mock"}}},
            f"providers.{'p' * 40}….[key]",
            f"a provider name is at most {MAX_NAME_CHARS} characters",
        ),
        (
            {
                "models": {
                    "m" * (MAX_LONG_NAME_CHARS + 1): {
                        "deployments": [{"provider": "demo", "model": "mock-small"}]
                    }
                }
            },
            f"models.{'m' * 40}….[key]",
            f"a model alias is at most {MAX_LONG_NAME_CHARS} characters",
        ),
        (
            {"teams": {"search": {"models": ["small"], "clients": ["c" * HUGE]}}},
            "teams.search.clients[0]",
            f"an OAuth client id is at most {MAX_LONG_NAME_CHARS} characters",
        ),
        (
            {
                "guardrails": {
                    "g" * (MAX_NAME_CHARS + 1): {
                        "input": [{"detector": "email", "action": "block"}]
                    }
                }
            },
            f"guardrails.{'g' * 40}….[key]",
            f"a guardrail profile name is at most {MAX_NAME_CHARS} characters",
        ),
    ],
)
async def test_a_name_or_url_past_its_bound_is_refused_naming_the_field(
    admin: Admin, changes: dict[str, Any], field: str, words: str
) -> None:
    status, answer = await put(admin, bundle(**changes))
    assert status == 400, answer
    error = answer["error"]
    assert error["code"] == "invalid_policy"
    assert [e["field"] for e in error["errors"]] == [field], error["errors"]
    assert words in error["errors"][0]["message"]
    assert error["param"] == field
    assert len(json.dumps(answer)) < 3000
    assert await newest_version(admin) == 1  # nothing stored


async def test_names_and_urls_at_their_bounds_are_accepted(admin: Admin) -> None:
    team, alias = "t" * MAX_NAME_CHARS, "m" * MAX_LONG_NAME_CHARS
    issuer = "https://idp.example/" + "a" * (MAX_URL_CHARS - len("https://idp.example/"))
    changes = {
        "models": {alias: {"deployments": [{"provider": "demo", "model": "mock-small"}]}},
        "teams": {team: {"models": [alias], "clients": ["c" * MAX_LONG_NAME_CHARS]}},
        "auth": {"issuers": [{"issuer": issuer, "audience": "x"}]},
    }
    status, answer = await put(admin, bundle(**changes))
    assert status == 200, answer
    assert answer["version"] == 2


async def test_a_control_character_in_a_team_name_is_escaped(admin: Admin) -> None:
    status, answer = await put(admin, bundle(teams={"t\n2\x1b[31m": {"models": ["small"]}}))
    assert status == 400, answer
    error = answer["error"]
    assert error["param"] == "teams.t\\n2\\x1b[31m.[key]"
    assert "teams.t\\n2\\x1b[31m.[key]" in error["message"]
    for text in (error["message"], error["param"], *(e["field"] for e in error["errors"])):
        assert text.isprintable(), text


async def test_a_control_character_in_an_admin_body_key_is_escaped(admin: Admin) -> None:
    status, answer = await admin.call(
        "PUT", "/admin/policy", {"bundle": bundle(), "base_version": 1, "x\ny": 1}
    )
    assert status == 400, answer
    assert answer["error"]["param"] == "x\\ny"
    assert answer["error"]["message"].isprintable()


def test_policy_check_prints_one_safe_bounded_line_per_error(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "policy.yaml").write_text(
        ADMIN_POLICY
        + '  "t\\n2": {models: [small]}\n'
        + f"  ? {'t' * HUGE}\n  : {{models: [small]}}\n"
        + f"  other: {{models: [{'x' * HUGE}]}}\n"
        + f'auth:\n  issuers: [{{issuer: "https://{"a" * HUGE}", audience: x}}]\n'
    )
    done = run_gateway("policy", "check", str(policies), cwd=tmp_path)
    assert done.returncode == 1, done
    lines = done.stderr.splitlines() + done.stdout.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(done.stdout) + len(done.stderr) < 4000, (done.stdout[:500], done.stderr[:500])
    assert any("teams.t\\n2.[key]" in line for line in errors), errors
    assert any(f"a team name is at most {MAX_NAME_CHARS}" in line for line in errors), errors
    assert any("auth.issuers[0].issuer: " in line and "a URL is at most" in line for line in errors)
    assert any(f"a model alias is at most {MAX_LONG_NAME_CHARS}" in line for line in errors)
    assert all(line.startswith(("error: ", "policy bundle ")) for line in lines if line), lines
