"""Texts dense with matches (megabytes of addresses) are checked off the event loop and
bounded: other clients keep being served, and the request is refused past the cap."""

import asyncio
import io
import time

import aiohttp
import orjson
import pytest

from gateway.guardrails.check import MAX_MATCHES
from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}", api_key: "${{UPSTREAM_KEY}}"}}
models:
  gpt-4o-mini:
    deployments: [{{provider: up, model: upstream-chat}}]
teams:
  demo: {{models: ["*"], guardrails: [pii]}}
guardrails:
  pii:
    rules:
      - {{detector: secrets, action: block}}
      - {{detector: email, action: redact}}
      - {{detector: credit_card, action: redact}}
      - {{detector: phone, action: redact}}
      - {{detector: iban, action: redact}}
      - {{detector: ip_address, action: redact}}
      - {{detector: us_ssn, action: block}}
"""


@pytest.fixture
async def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            yield gw, up, await gw.token()


async def health_latencies(origin: str, done: asyncio.Event) -> list[float]:
    """Each /healthz round, its 10 ms pause included: the client shares the gateway's
    event loop here, so a stall may fall in either."""
    seen = []
    async with aiohttp.ClientSession() as http:
        while not done.is_set():
            start = time.monotonic()
            async with http.get(f"{origin}/healthz") as response:
                assert response.status == 200
            await asyncio.sleep(0.01)
            seen.append(time.monotonic() - start)
    return seen


def no_stall(latencies: list[float]) -> bool:
    """No /healthz round both over a second and over 40% of all the rounds' time. A
    check on the loop leaves one round of nearly all of it (seconds for these bodies);
    a loaded machine slows every round alike, so a slow round alone does not fail it."""
    return max(latencies) < max(1.0, 0.4 * sum(latencies))


async def post_while_pinging(gw, token, body: dict) -> tuple[int, bytes, dict, list[float]]:
    """POST `body` to chat while another client asks /healthz again and again."""
    done = asyncio.Event()
    pings = asyncio.create_task(health_latencies(gw.origin, done))
    await asyncio.sleep(0.05)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{gw.base_url}/chat/completions",
                data=io.BytesIO(orjson.dumps(body)),
                headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
            ) as response:
                status, raw, headers = response.status, await response.read(), response.headers
    finally:
        done.set()
    return status, raw, dict(headers), await pings


@pytest.mark.parametrize("unit", ["10.0.0.1 ", "a@b.co "])
async def test_a_dense_request_neither_stalls_others_nor_passes(setup, unit):
    """11 MB of addresses: /healthz answers within a second throughout, and the request
    is refused (400 content_policy_violation naming the rule) with no upstream call."""
    gw, up, token = setup
    content = unit * (11_000_000 // len(unit))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    status, raw, _, latencies = await post_while_pinging(gw, token, body)
    error = orjson.loads(raw)["error"]
    assert status == 400 and error["code"] == "content_policy_violation"
    rule = "ip_address" if unit.startswith("10") else "email"
    assert f"'{rule}'" in error["message"] and f"more than {MAX_MATCHES}" in error["message"]
    assert unit.strip() not in error["message"]
    assert up.requests == []
    assert len(latencies) >= 3 and no_stall(latencies), (max(latencies), sum(latencies))


async def test_a_long_request_with_many_matches_is_redacted_whole(setup):
    """A 1 MB prompt with 5,000 addresses in it is checked on a thread and every one of
    them reaches the upstream redacted."""
    gw, up, token = setup
    content = "".join(
        f"row {i}: mail user{i}@corp.example.com now. " + "x" * 150 for i in range(5000)
    )
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    status, raw, _, latencies = await post_while_pinging(gw, token, body)
    assert status == 200, raw
    sent = up.requests[-1].json["messages"][0]["content"]
    assert sent.count("[REDACTED:email]") == 5000 and "@corp.example.com" not in sent
    assert no_stall(latencies), (max(latencies), sum(latencies))


async def test_a_dense_whole_answer_neither_stalls_others_nor_reaches_the_client(setup):
    """An upstream answer of 11 MB of addresses: /healthz keeps answering and the
    client gets the 400 refusal of the answer, none of its text."""
    gw, up, token = setup
    up.behave(Behaviour("ok", content="10.0.0.1 " * 1_200_000))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "list hosts"}]}
    status, raw, _, latencies = await post_while_pinging(gw, token, body)
    error = orjson.loads(raw)["error"]
    assert status == 400 and error["code"] == "content_policy_violation"
    assert "answer" in error["message"] and "'ip_address'" in error["message"]
    assert b"10.0.0.1" not in raw
    assert no_stall(latencies), (max(latencies), sum(latencies))


async def test_a_dense_stream_neither_stalls_others_nor_passes_the_cap(setup):
    """One streamed delta of 3.5 MB of addresses: /healthz keeps answering, and the
    stream ends with the error event naming the rule and the cap, none of its text sent."""
    gw, up, token = setup
    up.behave(Behaviour("ok", content="a@b.co " * 500_000, chunks=1))
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "list mail"}],
        "stream": True,
    }
    status, raw, _, latencies = await post_while_pinging(gw, token, body)
    assert status == 200
    events = [orjson.loads(line[6:]) for line in raw.split(b"\n\n") if line.startswith(b"data: {")]
    error = events[-1]["error"]
    assert error["code"] == "content_policy_violation"
    assert "'email'" in error["message"] and f"more than {MAX_MATCHES}" in error["message"]
    assert b"a@b.co" not in raw
    assert len(latencies) >= 3 and no_stall(latencies), (max(latencies), sum(latencies))


async def test_a_stream_of_dense_events_is_redacted_off_the_loop(setup):
    """Events each over the inline budget (100 addresses each): each is scanned on a
    thread, and every address reaches the client redacted."""
    gw, up, token = setup
    up.behave(Behaviour("ok", content="mail a@b.co now " * 4000, chunks=40))
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "list mail"}],
        "stream": True,
    }
    status, raw, _, latencies = await post_while_pinging(gw, token, body)
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    text = "".join(
        choice["delta"].get("content") or ""
        for line in raw.split(b"\n\n")
        if line.startswith(b"data: {")
        for choice in orjson.loads(line[6:])["choices"]
    )
    assert text.count("[REDACTED:email]") == 4000 and "a@b.co" not in text
    assert no_stall(latencies), (max(latencies), sum(latencies))
