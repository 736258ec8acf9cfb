"""An unknown kid while the JWKS refetch is rate-limited: 401 when the keys are fresh.

The refetch on an unknown kid runs at most once per 10 s per issuer, so anyone can
spend it (a junk token with a made-up kid). A kid that keys fetched successfully
within those 10 s lack is refused with 401: the key set is as fresh as the limit
allows, and IdPs publish a key before they sign with it (a key published and used
within seconds is the rare case, and its token works once the interval has passed).
A fetch under way is waited for; only when the keys could not be fetched is a token
503 `issuer_unavailable` (test_issuer_outage.py).
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
from joserfc.jws import JWSRegistry

from tests.support.clock import ManualClock
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.idp import FakeIdP, b64url, json_segment, new_key

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


async def test_a_key_used_within_10_s_of_a_fetch_that_lacks_it_is_401_then_works(
    s: Setup,
) -> None:
    """The rare case: a key published after a junk kid spent the refetch and used 3 s
    later is 401 with no fetch; once the interval has passed the same token refetches and
    works with the openai SDK."""
    assert (await s.models(s.token()))[0] == 200
    s.clock.advance(11)
    assert_invalid_token(*await s.models(s.junk()))
    assert s.idp.jwks_requests == 2
    s.idp.rotate("RS256")
    s.clock.advance(3)
    token = s.token(sub="after-rotation")
    assert_invalid_token(*await s.models(token))
    assert s.idp.jwks_requests == 2  # the rate limit holds
    s.clock.advance(7)
    async with openai.AsyncOpenAI(base_url=s.gw.base_url, api_key=token, max_retries=0) as client:
        assert [model.id async for model in client.models.list()] == ["m"]
    assert s.idp.jwks_requests == 3


async def test_a_junk_kid_is_401_and_costs_at_most_one_fetch_per_10_s(s: Setup) -> None:
    """Within 10 s of a fetch a junk kid is 401 at no cost; after them it costs one fetch
    and is 401 too; never a 503 while the issuer answers."""
    assert_invalid_token(*await s.models(s.junk()))  # the first fetch ran for this token
    assert s.idp.jwks_requests == 1
    s.clock.advance(4)
    assert_invalid_token(*await s.models(s.junk("yyy")))
    assert s.idp.jwks_requests == 1
    s.clock.advance(6)
    assert_invalid_token(*await s.models(s.junk("yyy")))
    assert s.idp.jwks_requests == 2
    s.clock.advance(1)
    assert_invalid_token(*await s.models(s.junk("xxx")))
    assert s.idp.jwks_requests == 2


async def test_a_token_arriving_during_a_fetch_waits_for_it(s: Setup) -> None:
    """A token with the new kid that arrives while a junk token's fetch is under way is
    answered from that fetch: 200 (not a 401 from the older keys in memory); the junk
    token that began it gets 401."""
    assert (await s.models(s.token()))[0] == 200
    s.clock.advance(10)
    s.idp.rotate("RS256")
    await s.idp.go_offline("hang")  # the JWKS is read when asked, then answered on come_online
    junk = asyncio.create_task(s.models(s.junk()))
    await wait_until(lambda: s.idp.jwks_requests == 2)  # that fetch has read the new JWKS
    s.clock.advance(1)
    fresh = asyncio.create_task(s.models(s.token(sub="after-rotation")))
    await asyncio.sleep(0.2)  # let it join the fetch under way
    assert not fresh.done()
    await s.idp.come_online()
    assert_invalid_token(*await junk)
    status, _, body = await fresh
    assert status == 200, body
    assert s.idp.jwks_requests == 2


async def test_an_unknown_kid_is_503_only_while_the_last_fetch_failed(s: Setup) -> None:
    """The IdP down when an unknown kid asks for a refetch: 503 with retry-after while the
    limit holds (no fetch); once the IdP answers again and the interval has passed, the
    refetch lacks the kid: 401."""
    assert (await s.models(s.token()))[0] == 200
    await s.idp.go_offline("503")
    s.clock.advance(10)
    assert issuer_unavailable(*await s.models(s.junk())) == 10
    assert s.idp.jwks_requests == 2
    s.clock.advance(4)
    assert issuer_unavailable(*await s.models(s.junk())) == 6
    await s.idp.come_online()
    s.clock.advance(6)
    assert_invalid_token(*await s.models(s.junk()))
    assert s.idp.jwks_requests == 3


async def test_concurrent_tokens_with_a_new_kid_share_one_fetch_and_work(s: Setup) -> None:
    """After a rotation, 20 tokens with the new kid at once: one fetch, all 200."""
    assert (await s.models(s.token()))[0] == 200
    s.clock.advance(10)
    s.idp.rotate("RS256")
    replies = await asyncio.gather(*(s.models(s.token(sub=f"u{i}")) for i in range(20)))
    assert [reply[0] for reply in replies] == [200] * 20
    assert s.idp.jwks_requests == 2


async def test_an_unknown_kid_is_401_each_time_while_the_keys_are_fresh(s: Setup) -> None:
    """The probe: a token signed with a key the IdP never published (kid nope9), sent three
    times in a row right after the gateway fetched the JWKS: 401 each time, one fetch."""
    assert (await s.models(s.token()))[0] == 200
    stranger = new_key("RS256", "nope9")
    header = {"alg": "RS256", "kid": "nope9", "typ": "at+jwt"}
    claims = {**s.idp.claims(), "aud": AUDIENCE, "team": "search"}
    signing_input = f"{json_segment(header)}.{json_segment(claims)}"
    signature = JWSRegistry.algorithms["RS256"].sign(signing_input.encode(), stranger)
    token = f"{signing_input}.{b64url(signature)}"
    for _ in range(3):
        assert_invalid_token(*await s.models(token))
        s.clock.advance(1)
    assert s.idp.jwks_requests == 1
