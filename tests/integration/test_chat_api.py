"""The OpenAI API through the gateway, with the official openai SDK as the client."""

import asyncio
import itertools
import time

import aiohttp
import pytest

from tests.support.admin import Admin
from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}", api_key: "${{UPSTREAM_KEY}}"}}
  demo: {{type: mock}}
models:
  gpt-4o-mini:
    deployments: [{{provider: up, model: upstream-chat}}]
  text-embedding-3-small:
    deployments: [{{provider: up, model: upstream-embed}}]
  offline:
    deployments: [{{provider: demo, model: mock-1}}]
teams:
  demo: {{models: ["*"]}}
  narrow: {{models: [offline]}}
"""


@pytest.fixture
async def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            yield gw, up


async def test_chat_completion_answers_with_usage_and_gateway_headers(setup):
    """A non-streamed chat gets the upstream's answer, usage, and the deployment header."""
    gw, up = setup
    client = await gw.openai()
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-request-id": "my-request-1"},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "mock reply from up"
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert raw.headers["x-request-id"] == "my-request-1"
    assert raw.headers["x-gateway-deployment"] == "up/upstream-chat"
    sent = up.requests[0]
    assert sent.json["model"] == "upstream-chat"
    assert sent.headers["authorization"] == "Bearer sk-upstream-secret"
    assert sent.headers["x-request-id"] == "my-request-1"


async def test_the_callers_token_and_headers_are_never_forwarded(setup):
    """The upstream sees the provider key only, not the caller's token or custom headers."""
    gw, up = setup
    client = await gw.openai()
    await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-forwarded-host": "evil.example", "cookie": "a=b"},
    )
    headers = up.requests[0].headers
    assert "sk-upstream-secret" in headers["authorization"]
    assert "cookie" not in headers and "x-forwarded-host" not in headers
    assert not any(k.startswith("x-stainless") for k in headers)


async def test_a_generated_request_id_when_the_caller_sends_none(setup):
    gw, _ = setup
    client = await gw.openai()
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-request-id"].startswith("req_")


async def test_stream_without_include_usage_hides_the_usage_chunk(setup):
    """The gateway asks the upstream for usage but the client, who did not ask, sees none."""
    gw, up = setup
    client = await gw.openai()
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "mock reply from up"
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert up.requests[0].json["stream_options"] == {"include_usage": True}


async def test_stream_with_include_usage_ends_with_the_usage_chunk(setup):
    gw, _ = setup
    client = await gw.openai()
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens > 0


async def test_raw_stream_ends_with_done(setup):
    """The SSE bytes are OpenAI's: data events, then `data: [DONE]`."""
    gw, _ = setup
    token = await gw.token()
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{gw.base_url}/chat/completions",
            json={
                "model": "gpt-4o-mini",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
            headers={"authorization": f"Bearer {token}"},
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-gateway-deployment"] == "up/upstream-chat"
            text = (await response.read()).decode()
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)
    assert '"usage"' not in text


async def test_embeddings(setup):
    gw, _ = setup
    client = await gw.openai()
    result = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [d.index for d in result.data] == [0, 1]
    assert result.usage.prompt_tokens > 0


async def test_legacy_completions(setup):
    gw, _ = setup
    client = await gw.openai()
    result = await client.completions.create(model="gpt-4o-mini", prompt="Say hi")
    assert result.choices[0].text
    assert result.usage.completion_tokens > 0


async def test_responses_pass_through_to_openai_type_deployments(setup):
    gw, up = setup
    client = await gw.openai()
    response = await client.responses.create(model="gpt-4o-mini", input="hi")
    assert response.output_text
    assert response.usage.input_tokens > 0
    assert up.requests[0].path == "/v1/responses"
    assert up.requests[0].json["model"] == "upstream-chat"


async def test_models_lists_only_the_teams_models(setup):
    gw, _ = setup
    everything = await gw.openai("demo")
    narrow = await gw.openai("narrow")
    assert sorted([m.id async for m in everything.models.list()]) == [
        "gpt-4o-mini",
        "offline",
        "text-embedding-3-small",
    ]
    assert [m.id async for m in narrow.models.list()] == ["offline"]
    assert (await narrow.models.retrieve("offline")).id == "offline"
    with pytest.raises(Exception) as caught:
        await narrow.models.retrieve("gpt-4o-mini")
    assert caught.value.status_code == 404


async def test_mock_provider_streams_offline(setup):
    gw, _ = setup
    client = await gw.openai()
    stream = await client.chat.completions.create(
        model="offline",
        messages=[{"role": "user", "content": "ping"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "This is the mock provider. You said: ping"
    assert chunks[-1].usage.completion_tokens > 0


async def test_mock_provider_answers_the_responses_api_streamed_and_not(setup):
    """The offline example serves /v1/responses too, including its typed event stream."""
    gw, _ = setup
    client = await gw.openai()
    response = await client.responses.create(model="offline", input="ping")
    assert response.output_text == "This is the mock provider. You said: ping"
    stream = await client.responses.create(model="offline", input="ping", stream=True)
    events = [event async for event in stream]
    assert events[0].type == "response.created"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "This is the mock provider. You said: ping"
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.output_tokens > 0


async def test_the_mock_provider_counts_a_huge_prompt_without_stalling_the_gateway(setup):
    """/healthz keeps answering while the built-in mock counts a 13 MB prompt (it used to
    count on the event loop: /healthz waited as long as the count took)."""
    gw, _ = setup
    prompt = " ".join(f"w{i}x" for i in range(1_500_000))  # ~13 MB, ~1 s to count
    client = await gw.openai(max_retries=0, timeout=60)
    big = asyncio.create_task(
        client.chat.completions.create(
            model="offline", messages=[{"role": "user", "content": prompt}]
        )
    )
    # The gateway runs on this test's loop: a stalled loop shows as a long gap between
    # two answers of /healthz asked for back to back (or between the last one and the
    # big answer). The bound is a share of the whole request's time, so a loaded
    # machine, which slows both, does not fail it: counting on the loop leaves one gap
    # of nearly the whole request; counting on a thread, gaps of a few tens of ms.
    answered = [time.perf_counter()]
    async with aiohttp.ClientSession() as http:
        while not big.done():
            async with http.get(f"{gw.origin}/healthz") as response:
                assert response.status == 200
            answered.append(time.perf_counter())
            await asyncio.sleep(0.01)
    answer = await big
    answered.append(time.perf_counter())
    assert answer.usage.prompt_tokens > 1_000_000
    gaps = [later - earlier for earlier, later in itertools.pairwise(answered)]
    whole = answered[-1] - answered[0]
    assert len(gaps) >= 5
    assert max(gaps) < 0.4 * whole, (whole, sorted(gaps)[-5:])


async def test_a_models_created_is_its_policy_versions_time_on_every_replica(tmp_path, monkeypatch):
    """`created` is when the running policy version was written: two replicas of one
    database (one started later) say the same, and a new version moves it."""
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    policy = POLICY.format(base="http://127.0.0.1:9/v1")
    async with running_gateway(tmp_path, policy) as first:
        client = await first.openai("demo")
        before = (await client.models.retrieve("offline")).created
        running = await first.services.policy_versions.current()
        assert running is not None and before == int(running.created_at.timestamp())
        await asyncio.sleep(1.1)
        async with running_gateway(tmp_path, None) as second:
            again = await (await second.openai("demo")).models.retrieve("offline")
            assert again.created == before
            token = await first.token(team="demo", scopes=["gateway:admin"])
            async with aiohttp.ClientSession() as http:
                admin = Admin(first.origin, http, token)
                change = {"changes": {"models": ["offline"]}, "base_version": running.version}
                status, _ = await admin.call("PATCH", "/admin/teams/demo", change)
                assert status == 200
            listed = [m async for m in client.models.list()]
            assert [m.id for m in listed] == ["offline"]
            assert listed[0].created > before
