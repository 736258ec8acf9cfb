"""An `auth.issuers` entry naming the gateway's own issuer is a policy error everywhere.

The gateway verifies the tokens it issues with its own keys, so such an entry could
never apply. The admin API answers 400 `invalid_policy` with `param` naming the entry's
field; `policy check` and the folder `serve` starts from refuse it with the same
message at file:line. The own issuer is GATEWAY_ISSUER_URL, else the one `serve`
derives from where it listens. A version stored before this rule still runs, the
entry ignored with a warning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import httpx2 as httpx

from tests.support.admin import Admin
from tests.support.processes import free_port
from tests.support.processes import run_gateway as run
from tests.support.serving import serve_process

POLICY = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: ["*"]}
"""
OWN = "https://gw.example.com"
ISSUERS = """\
auth:
  issuers:
    - issuer: "https://idp.example.com/"
      audience: llm-gateway
    - issuer: "ISSUER"
      audience: llm-gateway
"""
ENTRY_LINE = 11  # the second entry's `issuer:` in POLICY + ISSUERS
SETTINGS = ("GATEWAY_ISSUER_URL", "GATEWAY_PORT", "GATEWAY_HOST", "GATEWAY_DATABASE_URL")


def bare_env(**extra: str) -> dict[str, str]:
    """This process's environment without issuer, listener or database settings."""
    return {**{k: v for k, v in os.environ.items() if k not in SETTINGS}, **extra}


def write_policy(folder: Path, issuer: str | None) -> None:
    folder.mkdir(exist_ok=True)
    text = POLICY if issuer is None else POLICY + ISSUERS.replace("ISSUER", issuer)
    (folder / "bundle.yaml").write_text(text)


def own_issuer_error(issuer: str) -> str:
    return (
        f"auth.issuers[1].issuer: issuer '{issuer}' is this gateway's own issuer "
        "(GATEWAY_ISSUER_URL, else derived from GATEWAY_HOST and GATEWAY_PORT)"
    )


def admin_token(tmp_path: Path, env: dict[str, str]) -> str:
    minted = run("token", "--team", "demo", "--scope", "gateway:admin", cwd=tmp_path, env=env)
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip().splitlines()[-1]


async def put_with_issuer(origin: str, token: str, issuer: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        admin = Admin(origin, http, token)
        status, running = await admin.call("GET", "/admin/policy")
        assert status == 200, running
        entries = [
            {"issuer": "https://idp.example.com/", "audience": "llm-gateway"},
            {"issuer": issuer, "audience": "llm-gateway"},
        ]
        bundle = {**running["bundle"], "auth": {"issuers": entries}}
        body = {"bundle": bundle, "base_version": running["version"]}
        status, answer = await admin.call("PUT", "/admin/policy", body)
        _, after = await admin.call("GET", "/admin/policy")
        assert after["version"] == running["version"]  # nothing stored
        return status, answer


def assert_refused(status: int, answer: Any, issuer: str) -> None:
    assert status == 400, answer
    error = answer["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_policy")
    assert error["param"] == "auth.issuers[1].issuer"
    [issue] = error["errors"]
    assert issue["field"] == "auth.issuers[1].issuer"
    assert own_issuer_error(issuer) in f"{issue['field']}: {issue['message']}"


async def test_put_naming_the_explicit_own_issuer_is_400_naming_the_field(
    tmp_path: Path,
) -> None:
    write_policy(tmp_path / "policies", None)
    env = bare_env(GATEWAY_ISSUER_URL=OWN)
    with serve_process(tmp_path, base_env=env) as server:
        token = admin_token(tmp_path, env)
        status, answer = await put_with_issuer(server.origin, token, OWN)
        assert_refused(status, answer, OWN)


async def test_put_naming_the_derived_own_issuer_is_400(tmp_path: Path) -> None:
    """No GATEWAY_ISSUER_URL: `serve --port P` issues as http://localhost:P."""
    write_policy(tmp_path / "policies", None)
    env = bare_env()
    with serve_process(tmp_path, base_env=env, port_as_flag=True) as server:
        token = admin_token(tmp_path, env)
        own = f"http://localhost:{server.port}"
        status, answer = await put_with_issuer(server.origin, token, own)
        assert_refused(status, answer, own)


def test_policy_check_refuses_the_own_issuer_at_file_and_line(tmp_path: Path) -> None:
    write_policy(tmp_path / "pol", OWN)
    refused = run("policy", "check", "pol", cwd=tmp_path, env=bare_env(GATEWAY_ISSUER_URL=OWN))
    assert refused.returncode == 1, refused.stdout
    assert f"error: pol/bundle.yaml:{ENTRY_LINE}: {own_issuer_error(OWN)}" in refused.stderr
    assert "Traceback" not in refused.stderr
    # Where the gateway issues as another URL, the same entry is an external issuer.
    other = run("policy", "check", "pol", cwd=tmp_path, env=bare_env())
    assert other.returncode == 0, other.stderr
    # Unset, the own issuer is derived as `serve` derives it: localhost and GATEWAY_PORT.
    write_policy(tmp_path / "pol", "http://localhost:9137")
    derived = run("policy", "check", "pol", cwd=tmp_path, env=bare_env(GATEWAY_PORT="9137"))
    assert derived.returncode == 1, derived.stderr
    assert own_issuer_error("http://localhost:9137") in derived.stderr


def test_serve_refuses_to_start_from_a_folder_naming_its_own_issuer(tmp_path: Path) -> None:
    write_policy(tmp_path / "policies", OWN)
    env = bare_env(GATEWAY_ISSUER_URL=OWN, GATEWAY_PORT=str(free_port()))
    refused = run("serve", cwd=tmp_path, env=env)
    assert refused.returncode != 0
    assert own_issuer_error(OWN) in refused.stderr, refused.stderr


def test_a_version_stored_before_the_rule_still_runs_with_a_warning(tmp_path: Path) -> None:
    """Stored while the gateway issued as another URL, then served as OWN: it starts,
    ignores the entry and says so; refusing it would keep the gateway from starting."""
    write_policy(tmp_path / "policies", OWN)
    with serve_process(tmp_path, base_env=bare_env()) as server:
        assert httpx.get(f"{server.origin}/readyz", timeout=5).status_code == 200
    with serve_process(tmp_path, base_env=bare_env(GATEWAY_ISSUER_URL=OWN)) as server:
        assert httpx.get(f"{server.origin}/readyz", timeout=5).status_code == 200
        stderr = server.stderr()
    assert "auth.issuers[1] (issuer https://gw.example.com) is this gateway's own" in stderr


def test_policy_check_guesses_no_issuer_where_the_environment_names_none(tmp_path: Path) -> None:
    """A laptop or CI job (no GATEWAY_ISSUER_URL, GATEWAY_HOST nor GATEWAY_PORT) does not
    know the gateway's issuer: serve's default URL is not refused as if it were."""
    write_policy(tmp_path / "pol", "http://localhost:8080")
    checked = run("policy", "check", "pol", cwd=tmp_path, env=bare_env())
    assert checked.returncode == 0, checked.stderr


def test_policy_apply_refuses_the_issuer_its_database_was_served_with(tmp_path: Path) -> None:
    """`policy apply` on the database a gateway serves from: the issuer that `serve`
    recorded (the one `gateway token` mints for) is its own, whatever this shell says."""
    write_policy(tmp_path / "policies", None)
    with serve_process(tmp_path, base_env=bare_env(), port_as_flag=True) as server:
        own = f"http://localhost:{server.port}"
    write_policy(tmp_path / "pol", own)
    applied = run("policy", "apply", "pol", "--force", cwd=tmp_path, env=bare_env())
    assert applied.returncode == 1, applied.stdout
    assert own_issuer_error(own) in applied.stderr
    elsewhere = run("policy", "check", "pol", cwd=tmp_path, env=bare_env())
    assert elsewhere.returncode == 0, elsewhere.stderr  # check reads no database
