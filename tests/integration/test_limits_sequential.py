"""A client that waits for each answer's end before it sends the next is never refused for
concurrency: the slot is freed before the client can see the end, even when the gateway
still has work to do after the upstream's stream ended (counting the usage of an upstream
that reports none, on a thread)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from gateway.stream.usage_observer import UsageObserver
from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

POLICY = """\
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
teams:
  {team}:
    models: ["*"]
    budgets: [{{period: day, tokens: 1000000000}}]
    limits: {{concurrency: 1}}
    per_user: {{concurrency: 1}}
"""
COUNT = 20


@pytest.mark.parametrize("backend", ["redis", "in-process"])
async def test_streams_read_to_their_end_one_after_another_are_never_refused(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # The count of an upstream that reports no usage runs on a thread after the relay:
    # made slow here, so a next request that could overtake it always does.
    estimate = UsageObserver.estimate

    def slow_estimate(self: UsageObserver):  # type: ignore[no-untyped-def]
        time.sleep(0.03)
        return estimate(self)

    monkeypatch.setattr(UsageObserver, "estimate", slow_estimate)
    team = f"seq-{uuid.uuid4().hex[:8]}"
    settings = {"redis_url": redis_url} if backend == "redis" else {}
    async with MockUpstream("up") as up:
        up.behave("stream_no_usage")
        policy = POLICY.format(base=up.base_url, team=team)
        async with running_gateway(tmp_path, policy, **settings) as gw:
            token = await gw.token(team)
            body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            statuses = []
            async with httpx.AsyncClient(base_url=gw.origin) as client:  # one connection
                for _ in range(COUNT):
                    response = await client.post(
                        "/v1/chat/completions",
                        json={**body, "stream": True},
                        headers={"authorization": f"Bearer {token}"},
                    )  # read whole: the stream's end reached before the next is sent
                    statuses.append(response.status_code)
    assert statuses == [200] * COUNT, response.text


@pytest.mark.parametrize("usage", ["stream_no_usage", "ok"], ids=["counted here", "reported"])
@pytest.mark.parametrize("backend", ["redis", "in-process"])
async def test_sync_sdk_streams_that_stop_at_done_one_after_another_are_never_refused(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, backend: str, usage: str
) -> None:
    """The sync openai SDK stops reading at `[DONE]` and sends its next request at once,
    while the gateway may still be counting the usage (an upstream that reports none) or
    closing the upstream: the slot is freed before `[DONE]` goes out."""
    estimate = UsageObserver.estimate

    def slow_estimate(self: UsageObserver):  # type: ignore[no-untyped-def]
        time.sleep(0.03)
        return estimate(self)

    monkeypatch.setattr(UsageObserver, "estimate", slow_estimate)
    team = f"seq-{uuid.uuid4().hex[:8]}"
    settings = {"redis_url": redis_url} if backend == "redis" else {}
    async with MockUpstream("up") as up:
        up.behave(usage)
        policy = POLICY.format(base=up.base_url, team=team)
        async with running_gateway(tmp_path, policy, **settings) as gw:
            token = await gw.token(team)
            client = openai.OpenAI(base_url=gw.base_url, api_key=token, max_retries=0)

            def one_after_another() -> list[str]:
                texts = []
                for _ in range(COUNT):
                    stream = client.chat.completions.create(
                        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
                    )
                    texts.append("".join(c.choices[0].delta.content or "" for c in stream))
                return texts

            try:
                texts = await asyncio.to_thread(one_after_another)
            finally:
                client.close()
    assert len(texts) == COUNT and all(texts)


async def test_whole_answers_stored_in_the_cache_one_after_another_are_never_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole answer the response cache stores after it went out: the store awaits, and
    the client's next request must not find the slot still held."""
    team = f"seq-{uuid.uuid4().hex[:8]}"
    policy = (
        POLICY.format(base="{base}", team=team) + "    cache: {ttl_s: 600, max_bytes: 1000000}\n"
    )
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, policy.replace("{base}", up.base_url)) as gw:
            token = await gw.token(team)
            client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=token, max_retries=0)
            try:
                for i in range(COUNT):  # each a new prompt: a miss, stored
                    await client.chat.completions.create(
                        model="chat", messages=[{"role": "user", "content": f"hi {i}"}]
                    )
            finally:
                await client.close()
