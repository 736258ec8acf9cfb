"""`x-upstream-request-id`: the id the answering upstream gave its request (OpenAI's
`x-request-id`, `req_…`) returned next to the gateway's own `x-request-id`, for whole
answers, streams and the upstream's own refusals relayed; only a valid one (printable ASCII, at most 200 characters), never
an earlier attempt's, never on a cache hit's replay (REFERENCE.md §1.4)."""

from __future__ import annotations

import httpx2 as httpx
import pytest

from tests.support.gateway import RunningGateway, running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
  b: {{type: openai-compatible, api_base: "{b}"}}
  fake: {{type: mock}}
models:
  m:
    deployments:
      - {{provider: a, model: model-a}}
      - {{provider: b, model: model-b, priority: 2}}
    routing: {{retries: 2, attempt_timeout_s: 5, timeout_s: 10}}
  via-mock:
    deployments: [{{provider: fake, model: model-f}}]
  mock-after-a:
    deployments:
      - {{provider: a, model: model-a}}
      - {{provider: fake, model: model-f, priority: 2}}
    routing: {{retries: 2, attempt_timeout_s: 5, timeout_s: 10}}
  cached:
    deployments: [{{provider: b, model: model-b}}]
    cache: {{ttl_s: 600, max_bytes: 1000000}}
teams:
  demo: {{models: ["*"]}}
"""
HI = [{"role": "user", "content": "hi"}]
UPSTREAM_ID = "x-upstream-request-id"


@pytest.fixture
async def gateway(tmp_path):
    async with MockUpstream("a") as a, MockUpstream("b") as b:
        async with running_gateway(tmp_path, POLICY.format(a=a.base_url, b=b.base_url)) as gw:
            yield gw, a, b


async def post(gw: RunningGateway, **body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {await gw.token('demo')}", "x-request-id": "mine-1"}
    async with httpx.AsyncClient(base_url=gw.origin, timeout=30) as http:
        return await http.post("/v1/chat/completions", json=body, headers=headers)


async def test_a_whole_answer_carries_the_id_of_the_upstream_that_answered(gateway):
    """After a failover, the header holds the answering upstream's id, not the failed one's;
    the gateway's own x-request-id is the caller's, as before."""
    gw, a, b = gateway
    a.behave("status", status=503, headers={"x-request-id": "req_from_a"})
    b.behave(Behaviour(headers={"x-request-id": "req_from_b"}))
    reply = await post(gw, model="m", messages=HI)
    assert reply.status_code == 200
    assert reply.headers["x-gateway-deployment"] == "b/model-b"
    assert reply.headers[UPSTREAM_ID] == "req_from_b"
    assert reply.headers["x-request-id"] == "mine-1"


async def test_a_stream_carries_the_upstream_id(gateway):
    """A stream's headers carry the id its upstream gave when it accepted the stream."""
    gw, _, b = gateway
    b.behave(Behaviour(headers={"x-request-id": "req_stream_b"}))
    reply = await post(gw, model="cached", messages=HI, stream=True, user="no-cache-stream")
    assert reply.status_code == 200
    assert reply.text.rstrip().endswith("data: [DONE]")
    assert reply.headers[UPSTREAM_ID] == "req_stream_b"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("r" * 200, "r" * 200),
        ("req_with space~!", "req_with space~!"),
        ("r" * 201, None),  # too long: dropped, never cut
        ("req_é", None),  # not ASCII
        ("req\tx", None),  # not printable (a tab)
        ("", None),
    ],
)
async def test_only_a_valid_upstream_id_is_passed_on(gateway, sent, expected):
    """Printable ASCII of at most 200 characters is returned as given; anything else is
    dropped and the answer is served without the header."""
    gw, a, _ = gateway
    a.behave(Behaviour(headers={"x-request-id": sent}))
    reply = await post(gw, model="m", messages=HI)
    assert reply.status_code == 200
    assert reply.headers["x-gateway-deployment"] == "a/model-a"
    assert reply.headers.get(UPSTREAM_ID) == expected


async def test_an_earlier_attempts_id_never_stands_for_the_answering_one(gateway):
    """`a` accepted the request (with its id) but sent a broken body; the mock provider
    that then answered has no id: the answer carries none."""
    gw, a, _ = gateway
    a.behave("broken_json", headers={"x-request-id": "req_broken_a"})
    reply = await post(gw, model="mock-after-a", messages=HI)
    assert reply.status_code == 200
    assert reply.headers["x-gateway-deployment"] == "fake/model-f"
    assert UPSTREAM_ID not in reply.headers


async def test_the_mock_provider_and_a_cache_hit_carry_no_upstream_id(gateway):
    """The mock provider has no upstream; a cache hit's replay made no upstream call."""
    gw, _, b = gateway
    assert UPSTREAM_ID not in (await post(gw, model="via-mock", messages=HI)).headers
    b.behave(Behaviour(headers={"x-request-id": "req_stored_b"}))
    miss = await post(gw, model="cached", messages=HI)
    hit = await post(gw, model="cached", messages=HI)
    assert (miss.headers["x-gateway-cache"], hit.headers["x-gateway-cache"]) == ("miss", "hit")
    assert miss.headers[UPSTREAM_ID] == "req_stored_b"
    assert UPSTREAM_ID not in hit.headers
    assert len(b.requests) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_relayed_upstream_refusal_carries_the_upstream_id(gateway, stream):
    """An upstream's own 400 reaches the caller with the id that upstream gave it, as an
    answer would, next to the gateway's x-request-id."""
    gw, a, _ = gateway
    a.behave("status", status=400, headers={"x-request-id": "req_uperr123"})
    reply = await post(gw, model="m", messages=HI, stream=stream)
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert reply.headers[UPSTREAM_ID] == "req_uperr123"
    assert reply.headers["x-request-id"] == "mine-1"
    assert reply.headers["x-gateway-deployment"] == "a/model-a"


async def test_a_refusal_with_an_invalid_upstream_id_carries_none(gateway):
    """An upstream 400 whose id is not printable ASCII: no header, as for an answer."""
    gw, a, _ = gateway
    a.behave("status", status=400, headers={"x-request-id": "req\tx"})
    reply = await post(gw, model="m", messages=HI)
    assert reply.status_code == 400
    assert UPSTREAM_ID not in reply.headers
