"""A kid new to the gateway while the JWKS refetch is rate-limited: 503, never a 401.

The refetch on an unknown kid runs at most once per 10 s per issuer, so anyone can
spend it (a junk token with a made-up kid). A real token signed with the IdP's new
key arriving within those 10 s cannot be checked yet: it gets 503 `issuer_unavailable`
with `retry-after` (a 401 would make its client discard a good token). Only keys
fetched since a token arrived may refuse its kid with a 401.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.support.clock import ManualClock
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.idp import FakeIdP, b64url, json_segment

AUDIENCE = "llm-gateway"
POLICY = """
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  search: {models: [m]}
auth:
  issuers:
    - {issuer: "IDP", audience: llm-gateway, jwks_uri: "IDP/jwks", team_claim: team}
"""


@dataclass
class Setup:
    gw: RunningGateway
    idp: FakeIdP
    clock: ManualClock
    http: aiohttp.ClientSession

    async def models(self, token: str) -> tuple[int, dict[str, str], Any]:
        headers = {"authorization": f"Bearer {token}"}
        async with self.http.get(f"{self.gw.base_url}/models", headers=headers) as response:
            lowered = {k.lower(): v for k, v in response.headers.items()}
            return response.status, lowered, await response.json(content_type=None)

    def token(self, **claims: Any) -> str:
        return self.idp.mint({"aud": AUDIENCE, "team": "search", **claims})

    def junk(self, kid: str = "zzz") -> str:
        """Anyone can make this: a configured issuer, an unknown kid, no valid signature."""
        header = {"alg": "RS256", "kid": kid, "typ": "at+jwt"}
        claims = {"iss": self.idp.issuer, "aud": AUDIENCE, "exp": int(time.time()) + 60}
        return f"{json_segment(header)}.{json_segment(claims)}.{b64url(b'AAAA')}"


@pytest.fixture
async def s(tmp_path: Path) -> AsyncIterator[Setup]:
    async with FakeIdP() as idp:
        async with running_gateway(tmp_path, POLICY.replace("IDP", idp.issuer)) as gw:
            clock = ManualClock()
            gw.services.verifier.jwks.clock = clock
            async with aiohttp.ClientSession() as http:
                yield Setup(gw, idp, clock, http)
            await idp.come_online()  # a hanging answer is released before the server stops


def assert_invalid_token(status: int, headers: dict[str, str], body: Any) -> None:
    assert status == 401, body
    assert body["error"]["code"] == "invalid_api_key"
    assert headers["www-authenticate"] == 'Bearer realm="llm-gateway", error="invalid_token"'
    assert "retry-after" not in headers


def issuer_unavailable(status: int, headers: dict[str, str], body: Any) -> int:
    """Assert a 503 issuer_unavailable (no challenge); its retry-after in seconds."""
    assert status == 503, body
    assert (body["error"]["type"], body["error"]["code"]) == ("api_error", "issuer_unavailable")
    assert "www-authenticate" not in headers
    return int(headers["retry-after"])


async def wait_until(check: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll `check` (the fake IdP counts requests; it has no event to wait on)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


async def test_a_new_key_within_10_s_of_a_junk_kid_is_503_then_works(s: Setup) -> None:
    """A junk kid spends the refetch; the IdP's new key 3 s later gets 503 retry-after 7,
    and the same token works with the openai SDK once that time has come."""
    assert (await s.models(s.token()))[0] == 200
    s.clock.advance(11)
    assert_invalid_token(*await s.models(s.junk()))
    assert s.idp.jwks_requests == 2
    s.idp.rotate("RS256")
    s.clock.advance(3)
    token = s.token(sub="after-rotation")
    assert issuer_unavailable(*await s.models(token)) == 7
    assert s.idp.jwks_requests == 2  # the rate limit holds
    s.clock.advance(7)
    async with openai.AsyncOpenAI(base_url=s.gw.base_url, api_key=token, max_retries=0) as client:
        assert [model.id async for model in client.models.list()] == ["m"]
    assert s.idp.jwks_requests == 3


async def test_a_junk_kid_is_401_once_keys_fetched_since_it_arrived_lack_it(s: Setup) -> None:
    """Within 10 s of a fetch a junk kid is 503 at no cost; after them it costs one fetch
    and gets 401, and then 503 again for 10 s."""
    assert_invalid_token(*await s.models(s.junk()))  # the first fetch ran for this token
    assert s.idp.jwks_requests == 1
    s.clock.advance(4)
    assert issuer_unavailable(*await s.models(s.junk("yyy"))) == 6
    assert s.idp.jwks_requests == 1
    s.clock.advance(6)
    assert_invalid_token(*await s.models(s.junk("yyy")))
    assert s.idp.jwks_requests == 2
    s.clock.advance(1)
    assert issuer_unavailable(*await s.models(s.junk("xxx"))) == 9
    assert s.idp.jwks_requests == 2


async def test_a_fetch_begun_before_a_token_arrived_does_not_refuse_its_kid(s: Setup) -> None:
    """A token with the new kid that joins a fetch begun before the IdP rotated gets 503;
    the junk token that began that fetch gets 401."""
    assert (await s.models(s.token()))[0] == 200
    s.clock.advance(10)
    await s.idp.go_offline("hang")  # the JWKS is read when asked, then answered on come_online
    junk = asyncio.create_task(s.models(s.junk()))
    await wait_until(lambda: s.idp.jwks_requests == 2)  # that fetch has read the old JWKS
    s.idp.rotate("RS256")
    s.clock.advance(1)
    fresh = asyncio.create_task(s.models(s.token(sub="after-rotation")))
    await asyncio.sleep(0.2)  # let it join the fetch under way
    await s.idp.come_online()
    assert_invalid_token(*await junk)
    assert issuer_unavailable(*await fresh) == 9
    assert s.idp.jwks_requests == 2


async def test_concurrent_tokens_with_a_new_kid_share_one_fetch_and_work(s: Setup) -> None:
    """After a rotation, 20 tokens with the new kid at once: one fetch, all 200."""
    assert (await s.models(s.token()))[0] == 200
    s.clock.advance(10)
    s.idp.rotate("RS256")
    replies = await asyncio.gather(*(s.models(s.token(sub=f"u{i}")) for i in range(20)))
    assert [reply[0] for reply in replies] == [200] * 20
    assert s.idp.jwks_requests == 2
