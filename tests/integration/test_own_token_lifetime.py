"""A token signed with the gateway's own key but living longer than it mints gets 401."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2 as httpx

from gateway.auth.access_tokens import mint_token
from gateway.auth.keys import SigningKeyStore
from gateway.db import create_engine
from tests.support.gateway import running_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: ["*"]}
"""
TTL_S = 300


async def test_an_own_key_token_longer_than_the_token_ttl_is_refused(tmp_path: Path) -> None:
    """With a leaked key one could sign `exp = now + 10^9`; the issuer never mints more than
    GATEWAY_TOKEN_TTL_S, so such a token gets 401 invalid_token, and one of TTL_S verifies."""
    async with running_gateway(tmp_path, POLICY, token_ttl_s=TTL_S) as gw:
        engine = create_engine(gw.settings.database_url)
        try:
            key = await SigningKeyStore(engine).current()
        finally:
            await engine.dispose()

        def token(ttl_s: int) -> str:
            return mint_token(
                key,
                issuer=gw.settings.issuer_url,
                audience=gw.settings.audience,
                team="demo",
                subject="s",
                client_id="c",
                scopes=["gateway:invoke"],
                ttl_s=ttl_s,
                now=time.time(),
            )

        async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:

            async def models(bearer: str) -> httpx.Response:
                return await http.get("/v1/models", headers={"authorization": f"Bearer {bearer}"})

            assert (await models(token(TTL_S))).status_code == 200
            refused = await models(token(10**9))
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "invalid_api_key"
            assert refused.headers["www-authenticate"].endswith('error="invalid_token"')
