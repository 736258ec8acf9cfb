"""`auth.issuers` entries that could never apply: a repeated issuer, or the gateway's own.

A token names one issuer, and the gateway routes it to one entry by its `iss`
(compared exactly, as the verifier compares it), so a second entry for the same
issuer was dead: `policy check` said valid, and its tokens were refused 401.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from tests.support.admin import Admin
from tests.support.gateway import running_gateway
from tests.support.processes import run_gateway as run

POLICY = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: ["*"]}
auth:
  issuers:
    - issuer: "https://idp.example.com/"
      audience: llm-gateway
    - issuer: "SECOND"
      audience: other
      allowed_scopes: [gateway:invoke, gateway:admin]
      default_scopes: [gateway:admin]
"""
SECOND_ISSUER_LINE = 11


def check(tmp_path: Path, second: str) -> tuple[int, str]:
    folder = tmp_path / "pol"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(POLICY.replace("SECOND", second))
    result = run("policy", "check", "pol", cwd=tmp_path)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout + result.stderr


def test_policy_check_refuses_a_repeated_issuer_at_the_second_entry(tmp_path: Path) -> None:
    code, output = check(tmp_path, "https://idp.example.com/")
    assert code == 1, output
    assert (
        f"pol/bundle.yaml:{SECOND_ISSUER_LINE}: auth.issuers[1].issuer: "
        "issuer 'https://idp.example.com/' is listed twice (first at auth.issuers[0], "
        "pol/bundle.yaml:9)"
    ) in output
    assert "audience may be a list" in output


def test_issuers_differing_in_a_trailing_slash_are_two_issuers(tmp_path: Path) -> None:
    """The verifier compares `iss` exactly: each entry takes the tokens naming it."""
    code, output = check(tmp_path, "https://idp.example.com")
    assert code == 0, output
    assert "is valid" in output


async def test_put_of_a_repeated_issuer_is_400_naming_the_second_entry(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running_gateway(tmp_path, POLICY.split("auth:")[0]) as gw:
        token = await gw.token(scopes=["gateway:admin"], subject="alice@example.com")
        admin = Admin(gw.origin, http, token)
        _, running = await admin.call("GET", "/admin/policy")
        bundle = running["bundle"]
        first = {"issuer": "https://idp.example.com/", "audience": "llm-gateway"}
        bundle["auth"] = {"issuers": [first, {**first, "audience": "other"}]}
        status, answer = await admin.call(
            "PUT", "/admin/policy", {"bundle": bundle, "reason": "", "base_version": 1}
        )
        assert status == 400, answer
        assert answer["error"]["code"] == "invalid_policy"
        (error,) = answer["error"]["errors"]
        assert error["field"] == "auth.issuers[1].issuer"
        assert "listed twice (first at auth.issuers[0]" in error["message"]
        _, after = await admin.call("GET", "/admin/policy")
        assert after["version"] == 1


async def test_serve_warns_of_an_entry_naming_the_gateways_own_issuer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Tokens naming our own issuer are ours: the entry is ignored, and the log says so
    when the gateway starts, before any request."""
    caplog.set_level(logging.WARNING)
    own = "https://gw.example.com"
    policy = POLICY.replace("SECOND", "https://other-idp.example.com/").replace(
        "https://idp.example.com/", own
    )
    async with running_gateway(tmp_path, policy, issuer_url=own):
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("auth.issuers[0]" in w and own in w and "own issuer" in w for w in warnings), (
        warnings
    )


def test_a_repeated_issuer_is_reported_beside_a_schema_error_in_auth(tmp_path: Path) -> None:
    """A schema error sets `auth` aside; the repeated issuer is still named in the same run."""
    code, output = check(tmp_path, 'https://idp.example.com/"\n      colour: "red')
    assert code == 1, output
    assert "auth.issuers[1].colour: unknown key" in output
    assert f"bundle.yaml:{SECOND_ISSUER_LINE}: auth.issuers[1].issuer: issuer" in output
