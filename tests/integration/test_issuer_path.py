"""GATEWAY_ISSUER_URL with a path (`https://host/gw`): every endpoint the metadata
advertises answers, and so does RFC 8414 §3.1's metadata URL for that issuer; the root
forms keep working (a proxy that strips the prefix sends those)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx2 as httpx
import pytest
from authlib.oauth2.rfc8414 import get_well_known_url

from tests.support.gateway import RunningGateway, running_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  search: {models: ["*"]}
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def local(url: str) -> str:
    """The path of an advertised URL: where this test's gateway answers it."""
    return urlsplit(url).path


async def new_client(gw: RunningGateway, http: httpx.AsyncClient) -> tuple[str, str]:
    admin = await gw.token(team="search", scopes=["gateway:admin"])
    reply = await http.post(
        "/admin/clients",
        json={"team": "search", "scopes": ["gateway:invoke"]},
        headers={"authorization": f"Bearer {admin}"},
    )
    assert reply.status_code in (200, 201), reply.text
    created = reply.json()
    return created["client_id"], created["client_secret"]


@pytest.fixture(params=["https://gw.example.com/gw", "https://gw.example.com/gw/"])
async def gw(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, POLICY, issuer_url=request.param) as gateway:
        yield gateway


async def test_every_advertised_endpoint_answers(gw: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
        root = await http.get("/.well-known/oauth-authorization-server")
        assert root.status_code == 200
        meta = root.json()
        assert meta["issuer"] == gw.settings.issuer_url
        assert local(meta["token_endpoint"]) == "/gw/oauth/token"

        # RFC 8414 §3.1: the well-known path, then the issuer's path.
        well_known = local(get_well_known_url(meta["issuer"], external=True))
        assert well_known.startswith("/.well-known/oauth-authorization-server/gw")
        by_issuer_path = await http.get(well_known)
        assert by_issuer_path.status_code == 200, by_issuer_path.text
        assert by_issuer_path.json() == meta

        keys = await http.get(local(meta["jwks_uri"]))
        assert keys.status_code == 200, keys.text
        assert keys.json()["keys"]

        client = await new_client(gw, http)
        for token_path in (local(meta["token_endpoint"]), "/oauth/token"):
            reply = await http.post(
                token_path, data={"grant_type": "client_credentials"}, auth=client
            )
            assert reply.status_code == 200, (token_path, reply.text)
            answer = await http.post(
                "/v1/chat/completions",
                json=CHAT,
                headers={"authorization": f"Bearer {reply.json()['access_token']}"},
            )
            assert answer.status_code == 200, answer.text


async def test_the_root_forms_keep_working_and_other_prefixes_are_unknown(
    gw: RunningGateway,
) -> None:
    async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
        assert (await http.get("/.well-known/jwks.json")).status_code == 200
        refused = await http.post("/oauth/token", data={"grant_type": "password"})
        assert refused.status_code == 400
        assert refused.json()["error"] == "unsupported_grant_type"  # RFC 6749 §5.2 shape

        for path in ("/other/oauth/token", "/.well-known/oauth-authorization-server/other"):
            unknown = await http.request("POST" if "token" in path else "GET", path)
            assert unknown.status_code == 404, path
            assert unknown.json()["error"]["type"] == "invalid_request_error"

        wrong_method = await http.get("/gw/oauth/token")
        assert wrong_method.status_code == 405
        assert wrong_method.headers["allow"] == "POST"
        bad_form = await http.post(
            "/gw/oauth/token", content=b"x", headers={"content-type": "text/plain"}
        )
        assert bad_form.status_code == 400
        assert bad_form.json()["error"] == "invalid_request"
