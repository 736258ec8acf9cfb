"""An external issuer grants only its allowed_scopes: an IdP cannot make anyone an admin."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.support.admin import Admin
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.idp import FakeIdP

POLICY = """\
providers:
  demo: {{type: mock}}
models:
  m: {{deployments: [{{provider: demo, model: mock-1}}]}}
teams:
  search: {{models: [m]}}
auth:
  issuers:
    - {{issuer: "{issuer}", audience: llm-gateway, team_claim: team{extra}}}
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def chat(gw: RunningGateway, http: aiohttp.ClientSession, token: str) -> int:
    async with http.post(
        f"{gw.base_url}/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {token}"},
    ) as response:
        return response.status


async def test_an_idp_admin_scope_is_refused_unless_the_issuer_allows_it(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """By default an external token asking for gateway:admin gets 403 on /admin; invoke works."""
    async with FakeIdP() as idp:
        policy = POLICY.format(issuer=idp.issuer, extra="")
        async with running_gateway(tmp_path, policy) as gw:
            token = idp.mint(
                {"aud": "llm-gateway", "team": "search", "scope": "gateway:invoke gateway:admin"}
            )
            status, answer = await Admin(gw.origin, http, token).call("GET", "/admin/policy")
            assert status == 403, answer
            assert answer["error"]["code"] == "insufficient_scope"
            assert await chat(gw, http, token) == 200  # what the issuer may grant still works


async def test_an_issuer_allowed_admin_scope_reaches_the_admin_api(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with FakeIdP() as idp:
        extra = ", allowed_scopes: [gateway:invoke, gateway:admin]"
        async with running_gateway(tmp_path, POLICY.format(issuer=idp.issuer, extra=extra)) as gw:
            token = idp.mint({"aud": "llm-gateway", "team": "search", "scope": "gateway:admin"})
            status, answer = await Admin(gw.origin, http, token).call("GET", "/admin/policy")
            assert status == 200, answer
            assert answer["version"] == 1
