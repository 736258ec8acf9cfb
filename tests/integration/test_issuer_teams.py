"""An external token's team from a list claim (groups): the one team it names, else refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from joserfc.jws import JWSRegistry

from tests.support.gateway import RunningGateway, running_gateway
from tests.support.idp import FakeIdP, b64url, json_segment

POLICY = """\
providers:
  demo: {{type: mock}}
models:
  m: {{deployments: [{{provider: demo, model: mock-1}}]}}
teams:
  oa-a: {{models: [m]}}
  oa-g: {{models: [m]}}
auth:
  issuers:
    - {{issuer: "{issuer}", audience: llm-gateway, team_claim: groups{extra}}}
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
TEAM_MAP = ", team_map: {grp-g: oa-g, grp-a: oa-a}"


async def chat(
    gw: RunningGateway, http: aiohttp.ClientSession, token: str
) -> tuple[int, dict[str, str], Any]:
    async with http.post(
        f"{gw.base_url}/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {token}"},
    ) as response:
        headers = {k.lower(): v for k, v in response.headers.items()}
        return response.status, headers, await response.json(content_type=None)


async def test_a_groups_list_without_team_map_bills_the_team_it_names(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """groups ["Everyone", "oa-g"] acts as team oa-g, as the string "oa-g" does."""
    async with FakeIdP() as idp:
        async with running_gateway(tmp_path, POLICY.format(issuer=idp.issuer, extra="")) as gw:
            for groups in (["oa-g"], ["Everyone", "oa-g"], "oa-g"):
                token = idp.mint({"aud": "llm-gateway", "groups": groups})
                status, _, body = await chat(gw, http, token)
                assert status == 200, (groups, body)
                assert (await gw.services.verifier.verify(token)).team == "oa-g"
            status, _, body = await chat(
                gw, http, idp.mint({"aud": "llm-gateway", "groups": ["Everyone"]})
            )
            assert (status, body["error"]["message"]) == (
                401,
                "The access token's team is not known.",
            )


@pytest.mark.parametrize("extra", ["", TEAM_MAP], ids=["by name", "team_map"])
async def test_a_token_naming_two_teams_is_refused_whatever_the_order(
    tmp_path: Path, http: aiohttp.ClientSession, extra: str
) -> None:
    """Groups naming two teams get 403 ambiguous_team, never the alphabetically first team."""
    groups = ["grp-g", "grp-a"] if extra else ["oa-g", "oa-a"]
    async with FakeIdP() as idp:
        async with running_gateway(tmp_path, POLICY.format(issuer=idp.issuer, extra=extra)) as gw:
            for sent in (groups, groups[::-1]):
                status, headers, body = await chat(
                    gw, http, idp.mint({"aud": "llm-gateway", "groups": sent})
                )
                assert status == 403, body
                assert body == {
                    "error": {
                        "message": "The access token's groups claim maps to several teams "
                        "(oa-a, oa-g); the gateway needs exactly one.",
                        "type": "permission_error",
                        "param": None,
                        "code": "ambiguous_team",
                    }
                }
                assert "x-request-id" in headers
            status, _, body = await chat(
                gw, http, idp.mint({"aud": "llm-gateway", "groups": groups[:1]})
            )
            assert status == 200, body


async def test_a_token_signed_with_another_alg_than_its_jwk_names_is_refused(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The JWKS says alg RS256 for a key: a PS256 token signed with that key is 401."""
    async with FakeIdP() as idp:
        async with running_gateway(tmp_path, POLICY.format(issuer=idp.issuer, extra="")) as gw:
            kid = idp.kid("RS256")
            body = {**idp.claims(), "aud": "llm-gateway", "groups": "oa-g"}
            for header in ({"kid": kid}, {}):  # with its kid, and with none
                signing_input = (
                    f"{json_segment({'typ': 'at+jwt', 'alg': 'PS256', **header})}."
                    f"{json_segment(body)}"
                )
                signature = JWSRegistry.algorithms["PS256"].sign(
                    signing_input.encode(), idp.key(kid)
                )
                status, headers, answer = await chat(
                    gw, http, f"{signing_input}.{b64url(signature)}"
                )
                assert status == 401, answer
                assert headers["www-authenticate"].endswith('error="invalid_token"')
            status, _, answer = await chat(
                gw, http, idp.mint({"aud": "llm-gateway", "groups": "oa-g"}, alg="PS256")
            )
            assert status == 200, answer
