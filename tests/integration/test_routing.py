"""Routing through real upstreams: weights, priorities, failover, cooldown, deadlines, cancel."""

import asyncio
import time
from collections import Counter
from email.utils import formatdate

import aiohttp
import openai
import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

TWO_WEIGHTED = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
  b: {{type: openai-compatible, api_base: "{b}"}}
models:
  m:
    deployments:
      - {{provider: a, model: model-a, weight: 3}}
      - {{provider: b, model: model-b, weight: 1}}
    routing: {{retries: {retries}, attempt_timeout_s: {attempt}, timeout_s: {deadline},
               cooldown_s: {cooldown}, failure_threshold: {threshold}}}
teams:
  demo: {{models: ["*"]}}
"""

PRIMARY_BACKUP = TWO_WEIGHTED.replace("weight: 1}}", "priority: 2}}")


def policy(template: str, a: MockUpstream, b: MockUpstream, **routing: object) -> str:
    values = {"retries": 2, "attempt": 5, "deadline": 10, "cooldown": 30, "threshold": 3}
    values.update(routing)
    return template.format(a=a.base_url, b=b.base_url, **values)


async def chat(client: openai.AsyncOpenAI, **kwargs: object):
    return await client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}], **kwargs
    )


@pytest.fixture
async def pair():
    async with MockUpstream("a") as a, MockUpstream("b") as b:
        yield a, b


async def test_weights_split_traffic(tmp_path, pair):
    """Weight 3:1 sends roughly three quarters of the requests to the heavier deployment."""
    a, b = pair
    async with running_gateway(tmp_path, policy(TWO_WEIGHTED, a, b)) as gw:
        client = await gw.openai()
        answered = Counter()
        for _ in range(200):
            raw = await chat(client)
            answered[raw.headers["x-gateway-deployment"]] += 1
    assert answered["a/model-a"] + answered["b/model-b"] == 200
    assert 120 <= answered["a/model-a"] <= 175  # 150 expected; binomial sd ≈ 6


async def test_priority_two_serves_only_when_priority_one_fails(tmp_path, pair):
    a, b = pair
    async with running_gateway(tmp_path, policy(PRIMARY_BACKUP, a, b)) as gw:
        client = await gw.openai()
        for _ in range(5):
            assert (await chat(client)).headers["x-gateway-deployment"] == "a/model-a"
        a.behave("status", status=503)
        raw = await chat(client)
        assert raw.headers["x-gateway-deployment"] == "b/model-b"
        assert raw.parse().choices[0].message.content == "mock reply from b"
    assert len(b.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [
        Behaviour("status", status=500),
        Behaviour("status", status=429, retry_after=1),
        Behaviour("html"),
        Behaviour("broken_json"),
    ],
    ids=["500", "429", "html", "broken-json"],
)
async def test_failover_on_upstream_failures(tmp_path, pair, failure):
    """A 5xx, 429, an HTML page or broken JSON from one deployment fails over to the next."""
    a, b = pair
    a.behave(failure)
    async with running_gateway(tmp_path, policy(PRIMARY_BACKUP, a, b)) as gw:
        raw = await chat(await gw.openai())
    assert raw.status_code == 200
    assert raw.headers["x-gateway-deployment"] == "b/model-b"


NOT_FOUND = Behaviour(
    "status",
    status=404,
    body={
        "error": {
            "message": "The model `model-a` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    },
)


@pytest.mark.parametrize("endpoint", ["chat", "chat-stream", "completions", "embeddings"])
async def test_an_upstream_404_fails_over_to_the_next_deployment(tmp_path, pair, endpoint):
    """A retired or misnamed deployment (404 model_not_found) is the gateway's problem,
    not the caller's: priority 2 answers."""
    a, b = pair
    a.behave(NOT_FOUND)
    async with running_gateway(tmp_path, policy(PRIMARY_BACKUP, a, b)) as gw:
        client = await gw.openai(max_retries=0)
        if endpoint == "chat-stream":
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text == "mock reply from b"
        elif endpoint == "chat":
            raw = await chat(client)
            assert raw.headers["x-gateway-deployment"] == "b/model-b"
        elif endpoint == "completions":
            raw = await client.completions.with_raw_response.create(model="m", prompt="hi")
            assert raw.headers["x-gateway-deployment"] == "b/model-b"
        else:
            raw = await client.embeddings.with_raw_response.create(model="m", input="hi")
            assert raw.headers["x-gateway-deployment"] == "b/model-b"
    assert len(a.requests) == 1 and len(b.requests) == 1


async def test_every_deployment_answering_404_is_a_502_not_the_upstreams_404(tmp_path, pair):
    """A model the gateway lists is never 'not found' to the caller because an upstream
    lost it: 502 upstream_unavailable, naming no upstream model."""
    a, b = pair
    a.behave(NOT_FOUND)
    b.behave(NOT_FOUND)
    async with running_gateway(tmp_path, policy(PRIMARY_BACKUP, a, b, retries=1)) as gw:
        client = await gw.openai(max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            await chat(client)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unavailable"
    assert "model-a" not in caught.value.message and "model-b" not in caught.value.message
    assert len(a.requests) == 1 and len(b.requests) == 1


async def test_failover_on_connection_refused(tmp_path, pair):
    a, b = pair
    dead = "http://127.0.0.1:9/v1"  # discard port: nothing listens
    text = policy(PRIMARY_BACKUP, a, b).replace(a.base_url, dead)
    async with running_gateway(tmp_path, text) as gw:
        raw = await chat(await gw.openai())
    assert raw.headers["x-gateway-deployment"] == "b/model-b"


async def test_no_failover_on_the_callers_own_400(tmp_path, pair):
    """An upstream 400 is the caller's: passed back, cleaned of URLs and keys, not retried."""
    a, b = pair
    a.behave(
        "status",
        status=400,
        body={
            "error": {
                "message": "Bad max_tokens, see http://10.0.0.7:8000/docs key sk-abcdef123456789",
                "type": "invalid_request_error",
                "param": "max_tokens",
                "code": "invalid_value",
            }
        },
    )
    async with running_gateway(tmp_path, policy(PRIMARY_BACKUP, a, b)) as gw:
        client = await gw.openai()
        with pytest.raises(openai.BadRequestError) as caught:
            await chat(client)
    error = caught.value
    assert error.param == "max_tokens"
    assert error.code == "invalid_value"
    assert "10.0.0.7" not in error.message and "sk-abcdef" not in error.message
    assert "Bad max_tokens" in error.message
    assert len(a.requests) == 1 and len(b.requests) == 0


async def test_cooldown_after_consecutive_failures(tmp_path, pair):
    """After `failure_threshold` failures the deployment is skipped until cooldown ends."""
    a, b = pair
    a.behave("status", status=500)
    text = policy(PRIMARY_BACKUP, a, b, threshold=2, cooldown=1)
    async with running_gateway(tmp_path, text) as gw:
        client = await gw.openai()
        await chat(client)
        await chat(client)
        assert len(a.requests) == 2
        for _ in range(3):
            assert (await chat(client)).headers["x-gateway-deployment"] == "b/model-b"
        assert len(a.requests) == 2  # cooling: not even tried
        a.behave("ok")
        await asyncio.sleep(1.1)
        assert (await chat(client)).headers["x-gateway-deployment"] == "a/model-a"


async def test_retry_after_longer_than_cooldown_wins(tmp_path, pair):
    a, b = pair
    a.behave("status", status=429, retry_after=3)
    text = policy(PRIMARY_BACKUP, a, b, threshold=1, cooldown=0.2)
    async with running_gateway(tmp_path, text) as gw:
        client = await gw.openai()
        await chat(client)
        a.behave("ok")
        await asyncio.sleep(0.5)
        assert (await chat(client)).headers["x-gateway-deployment"] == "b/model-b"
    assert len(a.requests) == 1


async def test_every_deployment_cooling_is_a_502_with_retry_after(tmp_path, pair):
    """Both 502s carry retry-after; the second request still tries the deployment that
    cooled first (panic mode) instead of refusing without a try (issue 7)."""
    a, b = pair
    a.behave("status", status=500)
    b.behave("status", status=500)
    text = policy(PRIMARY_BACKUP, a, b, threshold=1, cooldown=30, retries=1)
    async with running_gateway(tmp_path, text) as gw:
        client = await gw.openai()
        with pytest.raises(openai.APIStatusError) as first:
            await chat(client)
        with pytest.raises(openai.APIStatusError) as second:
            await chat(client)
    assert first.value.status_code == 502
    assert first.value.code == "upstream_unavailable"
    assert int(first.value.response.headers["retry-after"]) >= 29
    assert second.value.status_code == 502
    assert int(second.value.response.headers["retry-after"]) >= 29
    assert len(a.requests) == 2 and len(b.requests) == 1  # a recovers first: the panic try


async def test_retries_are_bounded(tmp_path, pair):
    a, b = pair
    a.behave("status", status=500)
    b.behave("status", status=500)
    text = policy(TWO_WEIGHTED, a, b, retries=3, threshold=10)
    async with running_gateway(tmp_path, text) as gw:
        with pytest.raises(openai.InternalServerError) as caught:
            await chat(await gw.openai())
    assert caught.value.status_code == 502
    assert len(a.requests) + len(b.requests) == 4


async def test_an_upstream_that_never_answers_times_out_then_fails_over(tmp_path, pair):
    a, b = pair
    a.behave("hang")
    text = policy(PRIMARY_BACKUP, a, b, attempt=0.5, deadline=5)
    async with running_gateway(tmp_path, text) as gw:
        started = time.monotonic()
        raw = await chat(await gw.openai())
        took = time.monotonic() - started
    assert raw.headers["x-gateway-deployment"] == "b/model-b"
    assert 0.5 <= took < 2
    await a.wait_for_disconnects(1)  # the hung attempt was cancelled, its connection closed


async def test_the_whole_request_deadline_is_a_504(tmp_path, pair):
    """timeout_s bounds every attempt together: 504 upstream_timeout when it passes."""
    a, b = pair
    a.behave("hang")
    b.behave("hang")
    text = policy(PRIMARY_BACKUP, a, b, attempt=0.6, deadline=1, retries=5)
    async with running_gateway(tmp_path, text) as gw:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            await chat(await gw.openai())
        took = time.monotonic() - started
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"
    assert took < 1.5


async def test_a_stream_fails_over_before_its_first_byte(tmp_path, pair):
    a, b = pair
    a.behave("stream_drop", fault_after=0)
    async with running_gateway(tmp_path, policy(PRIMARY_BACKUP, a, b)) as gw:
        client = await gw.openai()
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "mock reply from b"


async def test_a_stream_that_breaks_after_its_first_byte_ends_with_an_error_event(tmp_path, pair):
    a, b = pair
    a.behave("stream_drop", fault_after=2)
    async with running_gateway(tmp_path, policy(PRIMARY_BACKUP, a, b)) as gw:
        client = await gw.openai()
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        received = []
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                received.append(chunk)
    assert len(received) == 2
    assert "failed mid-stream" in caught.value.message
    assert len(b.requests) == 0  # no failover once bytes reached the client


async def test_a_stalled_stream_ends_with_a_timeout_event(tmp_path, pair):
    a, b = pair
    a.behave("stream_stall", fault_after=1)
    text = policy(PRIMARY_BACKUP, a, b, attempt=0.5)
    async with running_gateway(tmp_path, text) as gw:
        client = await gw.openai()
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError) as caught:
            async for _ in stream:
                pass
    assert "stopped responding" in caught.value.message
    await a.wait_for_disconnects(1)


async def _hang_up_after(url: str, token: str, body: dict, first_bytes: bool) -> None:
    async with aiohttp.ClientSession() as http:
        response = await http.post(url, json=body, headers={"authorization": f"Bearer {token}"})
        if first_bytes:
            await response.content.readany()
        response.close()  # drop the connection mid-answer


async def test_a_client_that_disconnects_cancels_a_pending_upstream_call(tmp_path, pair):
    a, b = pair
    a.behave("hang")
    async with running_gateway(tmp_path, policy(PRIMARY_BACKUP, a, b)) as gw:
        token = await gw.token()
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        task = asyncio.create_task(
            _hang_up_after(f"{gw.base_url}/chat/completions", token, body, False)
        )
        await a.wait_for_requests(1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await a.wait_for_disconnects(1, within_s=2)
    assert len(b.requests) == 0


async def test_a_client_that_disconnects_mid_stream_cancels_the_upstream_stream(tmp_path, pair):
    a, b = pair
    a.behave("ok", chunks=50, chunk_delay_s=0.05)
    async with running_gateway(tmp_path, policy(PRIMARY_BACKUP, a, b)) as gw:
        token = await gw.token()
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        await _hang_up_after(f"{gw.base_url}/chat/completions", token, body, True)
        await a.wait_for_disconnects(1, within_s=2)
    assert not a.requests[0].completed


async def test_a_retry_after_http_date_extends_the_cooldown(tmp_path, pair):
    """RFC 9110 allows `Retry-After: <HTTP-date>`; it counts like delta-seconds."""
    a, b = pair
    a.behave(
        "status", status=429, headers={"retry-after": formatdate(time.time() + 30, usegmt=True)}
    )
    async with running_gateway(
        tmp_path, policy(PRIMARY_BACKUP, a, b, threshold=1, cooldown=0.2)
    ) as gw:
        client = await gw.openai()
        assert (await chat(client)).headers["x-gateway-deployment"] == "b/model-b"
        a.behave("ok")
        await asyncio.sleep(0.5)  # past cooldown_s, well inside the date
        assert (await chat(client)).headers["x-gateway-deployment"] == "b/model-b"
    assert len(a.requests) == 1


async def test_attempts_that_timed_out_are_a_504_even_when_they_trip_the_cooldown(tmp_path, pair):
    """The request's own timeouts are what the caller hears about, not 'cooling down'."""
    a, b = pair
    a.behave("hang")
    single = PRIMARY_BACKUP.replace("      - {{provider: b, model: model-b, priority: 2}}\n", "")
    async with running_gateway(tmp_path, policy(single, a, b, attempt=0.3, threshold=1)) as gw:
        with pytest.raises(openai.APIStatusError) as caught:
            await chat(await gw.openai())
    assert (caught.value.status_code, caught.value.code) == (504, "upstream_timeout")


async def test_a_stream_cut_by_the_request_deadline_leaves_the_deployment_healthy(tmp_path, pair):
    """A healthy upstream still generating at `timeout_s` is cut, but not counted as failing."""
    a, b = pair
    a.behave("ok", chunks=30, chunk_delay_s=0.1)  # 3 s, an event every 0.1 s
    text = policy(PRIMARY_BACKUP, a, b, attempt=1, deadline=1.5, threshold=1)
    async with running_gateway(tmp_path, text) as gw:
        client = await gw.openai()
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError) as caught:
            async for _ in stream:
                pass
        a.behave("ok")
        raw = await chat(client)
    assert "deadline" in caught.value.message
    assert raw.headers["x-gateway-deployment"] == "a/model-a"


SINGLE = PRIMARY_BACKUP.replace("      - {{provider: b, model: model-b, priority: 2}}\n", "")


async def _arrival_times(up: MockUpstream, n: int) -> list[float]:
    """When each of the first `n` requests reached the upstream (same event loop)."""
    times = []
    for k in range(1, n + 1):
        await up.wait_for_requests(k, within_s=10)
        times.append(time.monotonic())
    return times


async def test_one_failing_request_does_not_cool_a_single_deployment_model(tmp_path, pair):
    """Three failed attempts of one request count once: with failure_threshold 3 the next
    caller is served normally, retries included (issue 7)."""
    a, b = pair
    a.script([Behaviour("status", status=500)] * 3)
    async with running_gateway(tmp_path, policy(SINGLE, a, b, retries=2, threshold=3)) as gw:
        client = await gw.openai()
        with pytest.raises(openai.InternalServerError) as caught:
            await chat(client)
        assert caught.value.status_code == 502
        assert len(a.requests) == 3
        a.script([Behaviour("status", status=500)])  # one more failure, then ok
        raw = await chat(client)
    assert raw.status_code == 200
    assert raw.headers["x-gateway-deployment"] == "a/model-a"
    assert len(a.requests) == 5  # retried: a cooled deployment would get a single try


async def test_retries_of_one_deployment_are_spaced(tmp_path, pair):
    """Retries against the same deployment back off (jittered, doubling from 0.1 s)."""
    a, b = pair
    a.behave("status", status=500)
    async with running_gateway(tmp_path, policy(SINGLE, a, b, retries=2)) as gw:
        client = await gw.openai()
        watcher = asyncio.create_task(_arrival_times(a, 3))
        with pytest.raises(openai.InternalServerError):
            await chat(client)
        first, second, third = await watcher
    assert second - first >= 0.05  # half of 0.1 s is fixed, the rest jitter
    assert third - second >= 0.1
    assert third - first < 2.0


async def test_when_every_deployment_is_cooling_the_soonest_back_is_still_tried(tmp_path, pair):
    """Panic mode: both deployments cooling, the next request tries the one that cooled
    first, and succeeds if it recovered (issue 7: it used to be refused unseen)."""
    a, b = pair
    a.behave("status", status=500)
    b.behave("status", status=500)
    text = policy(PRIMARY_BACKUP, a, b, threshold=1, cooldown=30, retries=1)
    async with running_gateway(tmp_path, text) as gw:
        client = await gw.openai()
        with pytest.raises(openai.InternalServerError):
            await chat(client)
        a.behave("ok")
        b.behave("ok")
        raw = await chat(client)
        assert raw.headers["x-gateway-deployment"] == "a/model-a"
        # a answered, so it is healthy again: the next request does not panic
        assert (await chat(client)).headers["x-gateway-deployment"] == "a/model-a"
    assert len(a.requests) == 3 and len(b.requests) == 1


async def test_an_upstream_retry_after_longer_than_the_deadline_is_passed_to_the_client(
    tmp_path, pair
):
    """A 429 asking for 30 s is not retried inside a 10 s deadline; the 502 says when."""
    a, b = pair
    a.behave("status", status=429, retry_after=30)
    async with running_gateway(tmp_path, policy(SINGLE, a, b, retries=2, deadline=10)) as gw:
        with pytest.raises(openai.InternalServerError) as caught:
            await chat(await gw.openai())
    assert caught.value.status_code == 502
    assert 29 <= int(caught.value.response.headers["retry-after"]) <= 30
    assert len(a.requests) == 1


async def test_a_short_upstream_retry_after_spaces_the_retry(tmp_path, pair):
    """A 429 asking for 0.5 s is retried after (at least) 0.5 s, inside the deadline."""
    a, b = pair
    a.script([Behaviour("status", status=429, retry_after=0.5)])
    async with running_gateway(tmp_path, policy(SINGLE, a, b, retries=1)) as gw:
        watcher = asyncio.create_task(_arrival_times(a, 2))
        raw = await chat(await gw.openai())
        first, second = await watcher
    assert raw.status_code == 200
    assert second - first >= 0.5


async def streamed(client: openai.AsyncOpenAI) -> tuple[str, bool]:
    """One streamed chat: the deployment that answered, and whether it ended well."""
    raw = await client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    try:
        async for _ in raw.parse():
            pass
    except openai.APIError:
        return raw.headers["x-gateway-deployment"], False
    return raw.headers["x-gateway-deployment"], True


@pytest.mark.parametrize("mode", ["stream_drop", "stream_cut"])
async def test_streams_that_break_midway_cool_the_deployment_down(tmp_path, pair, mode):
    """A deployment whose streams die a few events in is cooled down after
    `failure_threshold` of them, as one failing before its first byte is: the first
    byte is no success that would reset its count. Before, every stream went to it."""
    a, b = pair
    a.behave(mode, fault_after=2)
    text = policy(PRIMARY_BACKUP, a, b, threshold=2, cooldown=30)
    async with running_gateway(tmp_path, text) as gw:
        client = await gw.openai()
        assert await streamed(client) == ("a/model-a", False)
        assert await streamed(client) == ("a/model-a", False)
        for _ in range(3):
            assert await streamed(client) == ("b/model-b", True)
        assert len(a.requests) == 2


async def test_a_stream_that_ends_well_resets_the_count(tmp_path, pair):
    """Broken, whole, broken: never two in a row, so the deployment keeps its traffic."""
    a, b = pair
    a.script(
        [
            Behaviour("stream_drop", fault_after=2),
            "ok",
            Behaviour("stream_drop", fault_after=2),
            "ok",
        ]
    )
    text = policy(PRIMARY_BACKUP, a, b, threshold=2, cooldown=30)
    async with running_gateway(tmp_path, text) as gw:
        client = await gw.openai()
        ended = [await streamed(client) for _ in range(4)]
        assert ended == [("a/model-a", False), ("a/model-a", True)] * 2
