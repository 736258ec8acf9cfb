"""A token signed by another gateway's key (minted against another database) is refused
with a 401 that says so, in the shape every other refused token has."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2 as httpx

from gateway.auth.access_tokens import mint_with_current_key
from gateway.db import migrate
from tests.support.gateway import running_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: ["*"]}
"""


async def test_a_token_minted_against_another_database_says_its_key_is_unknown(
    tmp_path: Path,
) -> None:
    """401 invalid_token naming an unknown signing key and another database as the likely cause."""
    other = tmp_path / "other"
    other.mkdir()
    other_url = f"sqlite+aiosqlite:///{other}/gateway.db"
    await migrate(other_url)
    async with running_gateway(tmp_path, POLICY) as gw:
        foreign = await mint_with_current_key(
            other_url,
            issuer=gw.settings.issuer_url,  # the same issuer URL: only the key differs
            audience=gw.settings.audience,
            team="demo",
            subject="tester",
            client_id="tests",
            scopes=("gateway:invoke",),
            ttl_s=600,
            now=time.time(),
        )
        async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
            reply = await http.get("/v1/models", headers={"authorization": f"Bearer {foreign}"})
            own = await gw.token()
            served = await http.get("/v1/models", headers={"authorization": f"Bearer {own}"})
    assert reply.status_code == 401, reply.text
    assert reply.headers["www-authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
    assert "signed by a key this gateway does not know" in error["message"]
    assert "another gateway's database" in error["message"]
    assert foreign not in reply.text
    assert served.status_code == 200  # the gateway's own token still works
