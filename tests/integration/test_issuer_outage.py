"""An external issuer whose keys cannot be fetched: 503 `issuer_unavailable`, never a 401.

A 401 tells a client to throw its token away (the openai SDK never retries one); a
token the gateway could not check is not a bad token. Each case below was a 401
`invalid_api_key` before. What a token's own claims refuse stays a 401, and a key
fetched before the outage keeps verifying; the refetch limit (once per 10 s per
issuer) holds however many tokens arrive.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from gateway.auth.jwks import FETCH_TIMEOUT_S, MIN_REFETCH_INTERVAL_S
from tests.support.clock import ManualClock
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.idp import FakeIdP, Offline

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
    - {issuer: "IDP", jwks_uri: "IDP/jwks", audience: llm-gateway, team_claim: team}
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
DOWN: list[Offline] = ["503", "500", "404", "not-json", "refuse", "hang"]


@dataclass
class Setup:
    gw: RunningGateway
    idp: FakeIdP
    clock: ManualClock
    http: aiohttp.ClientSession

    async def post(self, token: str) -> tuple[int, dict[str, str], Any]:
        headers = {"authorization": f"Bearer {token}"}
        async with self.http.post(
            f"{self.gw.base_url}/chat/completions", json=CHAT, headers=headers
        ) as response:
            lowered = {k.lower(): v for k, v in response.headers.items()}
            return response.status, lowered, await response.json(content_type=None)

    def token(self, **claims: Any) -> str:
        alg = claims.pop("alg", "RS256")
        kid = claims.pop("kid", None)
        return self.idp.mint({"aud": AUDIENCE, "team": "search", **claims}, alg=alg, kid=kid)

    @property
    def fetches(self) -> int:
        return self.idp.jwks_requests


@pytest.fixture
async def s(tmp_path: Path) -> AsyncIterator[Setup]:
    async with FakeIdP() as idp:
        policy = POLICY.replace("IDP", idp.issuer)
        async with running_gateway(tmp_path, policy, access_log=str(tmp_path / "access.log")) as gw:
            clock = ManualClock()
            gw.services.verifier.jwks.clock = clock
            async with aiohttp.ClientSession() as http:
                yield Setup(gw, idp, clock, http)
            await idp.come_online()  # a hanging answer is released before the server stops


def issuer_unavailable(s: Setup, status: int, headers: dict[str, str], body: Any) -> int:
    """Assert the 503's shape; its retry-after in seconds."""
    assert status == 503, body
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error = body["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "api_error",
        "issuer_unavailable",
        None,
    )
    assert "signing keys" in error["message"] and "issuer" in error["message"]
    # Never where the keys live: not the issuer's URL, its host, or the JWKS path.
    for secret in (s.idp.jwks_uri, s.idp.issuer, "127.0.0.1", "/jwks"):
        assert secret not in json.dumps(body)
    assert "www-authenticate" not in headers  # not a challenge: the token was not refused
    return int(headers["retry-after"])


def assert_invalid_token(status: int, headers: dict[str, str], body: Any) -> None:
    assert status == 401, body
    assert (body["error"]["type"], body["error"]["code"]) == (
        "authentication_error",
        "invalid_api_key",
    )
    assert headers["www-authenticate"] == 'Bearer realm="llm-gateway", error="invalid_token"'


@pytest.mark.parametrize("mode", DOWN)
async def test_a_token_whose_issuer_keys_cannot_be_fetched_is_503_with_retry_after(
    s: Setup, mode: Offline
) -> None:
    """JWKS answering 503/500/404/HTML, refusing connections, or hanging (cut at the fetch
    timeout): 503 issuer_unavailable, retry-after = when the next fetch may run; once the
    issuer is back and that time has come, the same kind of token works."""
    await s.idp.go_offline(mode)
    started = time.monotonic()
    assert issuer_unavailable(s, *await s.post(s.token())) == MIN_REFETCH_INTERVAL_S
    assert time.monotonic() - started < FETCH_TIMEOUT_S + 3  # a hanging IdP is cut
    fetches = s.fetches
    assert fetches == (0 if mode == "refuse" else 1)

    s.clock.advance(4)  # within the interval: answered from the failure, no fetch
    assert issuer_unavailable(s, *await s.post(s.token(sub="user-2"))) == 6
    await s.idp.come_online()
    assert issuer_unavailable(s, *await s.post(s.token(sub="user-3"))) == 6
    assert s.fetches == fetches

    s.clock.advance(6)  # what retry-after said: the issuer is asked again
    status, _, body = await s.post(s.token(sub="user-4"))
    assert status == 200, body
    assert s.fetches == fetches + 1


@pytest.mark.parametrize("mode", ["503", "refuse"])
async def test_cached_keys_keep_verifying_during_an_outage_a_new_kid_is_503(
    s: Setup, mode: Offline
) -> None:
    """Keys fetched before the outage verify new tokens; a kid the cache lacks cannot be
    checked (the issuer may have rotated) so is 503, throttled or not; after recovery the
    rotated key verifies, and an unknown kid after a successful refetch is 401 again."""
    assert (await s.post(s.token()))[0] == 200
    await s.idp.go_offline(mode)
    s.clock.advance(2 * 3600)  # keys are old: a background refresh is tried and fails
    status, _, body = await s.post(s.token(sub="user-2"))
    assert status == 200, body
    s.idp.rotate("RS256")  # signs with a kid the gateway has never seen
    issuer_unavailable(s, *await s.post(s.token(sub="user-3")))  # throttled after a failure
    s.clock.advance(10)
    fetches = s.fetches
    issuer_unavailable(s, *await s.post(s.token(sub="user-4")))  # its refetch fails
    if mode == "503":
        assert s.fetches == fetches + 1
    status, _, body = await s.post(s.token(sub="user-5", alg="ES256"))  # a cached kid
    assert status == 200, body

    await s.idp.come_online()
    s.clock.advance(10)
    status, _, body = await s.post(s.token(sub="user-6"))
    assert status == 200, body  # the refetch for the new kid succeeded
    # The fetch just made (the test clock stands still) lacks this kid: 401.
    assert_invalid_token(*await s.post(s.token(kid="not-published")))
    s.clock.advance(10)
    fetches = s.fetches
    assert_invalid_token(*await s.post(s.token(kid="still-not-published")))
    assert s.fetches == fetches + 1


async def test_the_openai_sdk_waits_out_the_retry_after_and_gets_its_answer(s: Setup) -> None:
    """The SDK retries a 503 after its retry-after; by then the gateway may ask the issuer
    again, so the retry is answered (a 401 would have ended the call, token discarded)."""
    s.clock.now = time.monotonic()  # real time from here: the SDK really waits
    await s.idp.go_offline("503")
    issuer_unavailable(s, *await s.post(s.token()))
    await s.idp.come_online()
    s.clock.now += MIN_REFETCH_INTERVAL_S - 0.8  # the next fetch may run in 0.8 s
    offset = s.clock.now - time.monotonic()
    s.gw.services.verifier.jwks.clock = lambda: time.monotonic() + offset
    async with openai.AsyncOpenAI(
        base_url=s.gw.base_url, api_key=s.token(sub="sdk"), max_retries=1
    ) as client:
        started = time.monotonic()
        completion = await client.chat.completions.create(**CHAT)
    assert completion.choices[0].message.content
    assert 0.8 <= time.monotonic() - started < 5  # it waited retry-after (1 s), once
    assert s.fetches == 2


async def test_a_flood_of_tokens_for_a_down_issuer_fetches_once_per_10_seconds(s: Setup) -> None:
    """Many concurrent tokens share one failed fetch; within 10 s none fetches again."""
    await s.idp.go_offline("503")
    first = await asyncio.gather(*(s.post(s.token(sub=f"u{i}")) for i in range(30)))
    assert all(issuer_unavailable(s, *reply) >= 1 for reply in first)
    assert s.fetches == 1
    s.clock.advance(5)
    again = await asyncio.gather(*(s.post(s.token(sub=f"v{i}")) for i in range(30)))
    assert all(issuer_unavailable(s, *reply) == 5 for reply in again)
    assert s.fetches == 1

    await s.idp.come_online()
    s.clock.advance(5)
    assert (await s.post(s.token()))[0] == 200
    await s.idp.go_offline("503")
    s.clock.advance(10)
    kids = await asyncio.gather(*(s.post(s.token(kid=f"new-{i}")) for i in range(30)))
    assert all(issuer_unavailable(s, *reply) >= 1 for reply in kids)
    assert s.fetches == 3  # the failure, the recovery, one refetch for 30 unknown kids


async def test_a_token_its_own_claims_refuse_is_still_401_while_the_issuer_is_down(
    s: Setup,
) -> None:
    """Expired, another audience, not yet valid: a 401 whatever its signature; a token that
    might be good is the one that gets the 503."""
    await s.idp.go_offline("refuse")
    issuer_unavailable(s, *await s.post(s.token()))
    assert_invalid_token(*await s.post(s.token(exp=int(time.time()) - 3600)))
    assert_invalid_token(*await s.post(s.token(aud="someone-else")))
    assert_invalid_token(*await s.post(s.token(nbf=int(time.time()) + 3600)))


async def test_the_503_is_recorded_on_the_access_line_and_the_ledger(tmp_path: Path) -> None:
    """Like a 401, the refusal is one access line and one ledger row: its own status and code,
    the issuer named for the operator (not the caller)."""
    async with FakeIdP() as idp:
        policy = POLICY.replace("IDP", idp.issuer)
        log = tmp_path / "access.log"
        async with running_gateway(tmp_path, policy, access_log=str(log)) as gw:
            await idp.go_offline("503")
            token = idp.mint({"aud": AUDIENCE, "team": "search"})
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"{gw.base_url}/chat/completions",
                    json=CHAT,
                    headers={"authorization": f"Bearer {token}"},
                ) as response:
                    assert response.status == 503
                    request_id = response.headers["x-request-id"]
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert (line["request_id"], line["status"], line["error_code"]) == (
        request_id,
        503,
        "issuer_unavailable",
    )
    assert idp.issuer in line["error_detail"] and line["team"] is None
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM usage_ledger")]
    assert [(r["request_id"], r["status"], r["error_code"]) for r in rows] == [
        (request_id, 503, "issuer_unavailable")
    ]
    assert rows[0]["outcome"] == line["outcome"]
    assert rows[0]["team"] is None and rows[0]["cost_nanousd"] == 0
