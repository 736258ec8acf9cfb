"""The response cache in the request path, through the official openai SDK as a new user
would use it: repeated requests answered from the cache (streamed and not), free in the
budget and on the ledger, never across teams, and never an answer that did not complete."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from opentelemetry.trace import SpanKind

from gateway.limits.plan import Estimate, build_plan
from gateway.usage.pricing import usd_text
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.metrics import total
from tests.support.telemetry import traced_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat:
    deployments: [{{provider: up, model: upstream-chat}}]
    price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
  tiny-cache:
    deployments: [{{provider: up, model: upstream-chat}}]
    cache: {{ttl_s: 60, max_bytes: 200}}
routing: {{timeout_s: 10, attempt_timeout_s: 5, retries: 0}}
teams:
  cached:
    models: ["*"]
    cache: {{ttl_s: 600, max_bytes: 1000000}}
    budgets: [{{period: day, tokens: 100000}}]
    limits: {{rpm: {rpm}, concurrency: 5}}
  other:
    models: ["*"]
    cache: {{ttl_s: 600, max_bytes: 1000000}}
  plain: {{models: ["*"]}}
"""
HELLO = [{"role": "user", "content": "hello there, cache"}]
CACHE = "x-gateway-cache"
ESTIMATED = "x-gateway-tokens-estimated"


def policy(base: str, rpm: int = 1000) -> str:
    return POLICY.format(base=base, rpm=rpm)


@pytest.fixture
async def up():
    async with MockUpstream("up") as upstream:
        yield upstream


async def ask(client: openai.AsyncOpenAI, **kwargs: Any) -> tuple[str | None, Any, Any]:
    """A whole answer: (x-gateway-cache, the parsed completion, the raw response)."""
    kwargs.setdefault("model", "chat")
    kwargs.setdefault("messages", HELLO)
    raw = await client.chat.completions.with_raw_response.create(**kwargs)
    return raw.headers.get(CACHE), raw.parse(), raw


async def ask_stream(client: openai.AsyncOpenAI, **kwargs: Any) -> tuple[str | None, list[Any]]:
    """A streamed answer: (x-gateway-cache, every chunk the SDK parsed)."""
    kwargs.setdefault("model", "chat")
    kwargs.setdefault("messages", HELLO)
    raw = await client.chat.completions.with_raw_response.create(stream=True, **kwargs)
    chunks = [chunk async for chunk in raw.parse()]
    return raw.headers.get(CACHE), chunks


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def ledger_rows(tmp_path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM usage_ledger ORDER BY at_ms, rowid")]


async def budget_used(gw: RunningGateway, team: str = "cached") -> tuple[int, int]:
    """(used, reserved) tokens of the team's day budget, once nothing is in flight."""
    limits = gw.services.limits
    rules = gw.services.policy.current().teams[team]
    plan = build_plan(rules, "tester", Estimate(0, 0), limits.clock())
    for _ in range(200):  # the hold is settled just after the answer went out
        counter = (await limits.snapshot(plan)).budgets[0]
        assert counter is not None
        if counter.reserved == 0:
            return counter.used, counter.reserved
        await asyncio.sleep(0.01)
    raise AssertionError("a reservation was never settled")


async def test_a_repeated_request_is_a_free_hit_on_the_ledger(tmp_path, up):
    """The second identical request: x-gateway-cache hit, the same answer, no upstream
    call, nothing added to the team's budget, cost 0; its ledger row says hit with the
    tokens it saved."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        status, first, raw = await ask(client)
        assert (status, raw.headers["x-gateway-cost-usd"]) == ("miss", first_cost(first))
        used = await budget_used(gw)
        assert used[0] == first.usage.total_tokens
        status, again, raw = await ask(client)
        assert status == "hit"
        assert again.id == first.id and again.choices[0].message.content == (
            first.choices[0].message.content
        )
        assert again.usage == first.usage  # the stored answer's own usage stays in the body
        assert raw.headers["x-gateway-cost-usd"] == usd_text(0)
        assert raw.headers["x-gateway-deployment"] == "up/upstream-chat"
        assert len(up.requests) == 1
        assert await budget_used(gw) == used
    miss, hit = ledger_rows(tmp_path)
    assert (miss["cache"], hit["cache"]) == ("miss", "hit")
    assert miss["cost_nanousd"] > 0
    assert (hit["cost_nanousd"], hit["price_source"]) == (0, "none")
    assert (hit["input_tokens"], hit["output_tokens"]) == (
        miss["input_tokens"],
        miss["output_tokens"],
    )
    assert (hit["status"], hit["outcome"], hit["attempts"]) == (200, "ok", 0)


def first_cost(completion: Any) -> str:
    """The cost header of a `chat` answer: 1 USD per M input tokens, 2 per M output."""
    return usd_text(
        completion.usage.prompt_tokens * 1000 + completion.usage.completion_tokens * 2000
    )


async def test_a_hit_still_counts_toward_rpm(tmp_path, up):
    """rpm 2: a miss and a hit use both requests of the minute; the third, a hit too, is
    refused with 429 (the cache does not bypass rate limits)."""
    async with running_gateway(tmp_path, policy(up.base_url, rpm=2)) as gw:
        client = await gw.openai("cached")
        assert (await ask(client))[0] == "miss"
        assert (await ask(client))[0] == "hit"
        with pytest.raises(openai.RateLimitError) as refused:
            await ask(client)
        assert CACHE not in refused.value.response.headers
        assert len(up.requests) == 1


async def test_streams_and_whole_answers_share_entries(tmp_path, up):
    """A completed stream is served to a whole-answer client, and a whole answer is
    replayed as a stream (with the usage chunk only when asked for)."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        status, streamed = await ask_stream(client)
        assert status == "miss"
        status, whole, _ = await ask(client)
        assert status == "hit"
        assert whole.choices[0].message.content == text_of(streamed)
        assert whole.choices[0].finish_reason == "stop"
        assert len(up.requests) == 1

        other = [{"role": "user", "content": "a second question"}]
        status, whole, _ = await ask(client, messages=other)
        assert status == "miss"
        status, replayed = await ask_stream(client, messages=other)
        assert status == "hit"
        assert text_of(replayed) == whole.choices[0].message.content
        assert all(c.usage is None for c in replayed)
        assert replayed[-1].choices[0].finish_reason == "stop"
        status, with_usage = await ask_stream(
            client, messages=other, stream_options={"include_usage": True}
        )
        assert status == "hit"
        assert with_usage[-1].usage == whole.usage and not with_usage[-1].choices
        assert len(up.requests) == 2


async def test_two_teams_never_share_an_entry(tmp_path, up):
    """The same request from two teams: each gets its own answer from the upstream."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        cached, other = await gw.openai("cached"), await gw.openai("other")
        status, mine, _ = await ask(cached)
        assert status == "miss"
        status, theirs, _ = await ask(other)
        assert status == "miss"
        assert theirs.id != mine.id
        assert len(up.requests) == 2
        assert (await ask(other))[1].id == theirs.id
        assert (await ask(cached))[1].id == mine.id
        assert len(up.requests) == 2


async def test_several_choices_bypass_the_cache(tmp_path, up):
    """n > 1 asks for distinct samples: never answered from the cache, never stored."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        assert (await ask(client, n=2))[0] == "bypass"
        assert (await ask(client, n=2))[0] == "bypass"
        assert (await ask(client))[0] == "miss"
        assert len(up.requests) == 3


async def test_n_of_one_is_served_the_answer_of_no_n(tmp_path, up):
    """`n: 1` (OpenAI's default) and no `n` are one request to the cache, either way
    round; the upstream still gets the body as the client sent it."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        status, first, _ = await ask(client, n=1)
        assert status == "miss"
        status, again, _ = await ask(client)
        assert (status, again.id) == ("hit", first.id)
        assert (await ask(client, n=1))[0] == "hit"
        other = [{"role": "user", "content": "no n first"}]
        assert (await ask(client, messages=other))[0] == "miss"
        assert (await ask(client, messages=other, n=1))[0] == "hit"
        assert [r.json.get("n") for r in up.requests] == [1, None]


async def test_a_team_without_a_cache_gets_no_header(tmp_path, up):
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("plain")
        assert (await ask(client))[0] is None
        assert (await ask(client))[0] is None
        assert len(up.requests) == 2


async def test_key_order_and_whitespace_do_not_split_entries(tmp_path, up, http):
    """The same JSON with its keys in another order and other whitespace is a hit."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        headers = {
            "authorization": f"Bearer {await gw.token('cached')}",
            "content-type": "application/json",
        }
        bodies = [
            b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":0}',
            b'{ "temperature" : 0,\n  "messages" : [ {"content": "hi", "role": "user"} ],'
            b'\n  "model" : "chat" }',
        ]
        statuses = []
        for body in bodies:
            async with http.post(
                f"{gw.base_url}/chat/completions", data=body, headers=headers
            ) as r:
                assert r.status == 200
                statuses.append(r.headers.get(CACHE))
        assert statuses == ["miss", "hit"]
        assert len(up.requests) == 1


async def test_an_upstream_error_is_not_stored(tmp_path, up):
    """A failed request leaves nothing behind: the next one goes upstream, then hits."""
    up.script([Behaviour("status", status=500)])
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        with pytest.raises(openai.APIStatusError) as failed:
            await ask(client)
        # the failure says how the cache saw it (a miss), as its ledger row does (SPEC §2)
        assert failed.value.response.headers[CACHE] == "miss"
        assert (await ask(client))[0] == "miss"
        assert (await ask(client))[0] == "hit"
        assert len(up.requests) == 2


async def test_a_cut_stream_is_not_stored(tmp_path, up):
    """A stream the upstream ended without its finish and [DONE] is not kept."""
    up.script([Behaviour("stream_cut", fault_after=2)])
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        with pytest.raises(openai.APIError):
            await ask_stream(client)
        assert (await ask(client))[0] == "miss"
        assert len(up.requests) == 2


async def test_a_stream_the_client_abandons_is_not_stored(tmp_path, up, http):
    """The client reads one event and hangs up: nothing is stored, the next request is a
    miss answered by the upstream."""
    up.behave(Behaviour(chunk_delay_s=0.2, chunks=10))
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        headers = {"authorization": f"Bearer {await gw.token('cached')}"}
        body = {"model": "chat", "messages": HELLO, "stream": True}
        async with http.post(f"{gw.base_url}/chat/completions", json=body, headers=headers) as r:
            assert r.headers[CACHE] == "miss"
            await r.content.readuntil(b"\n\n")
            r.close()
        await up.wait_for_disconnects(1)
        await wait_until(lambda: gw.services.in_flight.count == 0)
        up.behave("ok")
        assert (await ask(await gw.openai("cached")))[0] == "miss"
        assert len(up.requests) == 2


async def wait_until(predicate: Any, within_s: float = 5.0) -> None:
    """Poll `predicate` (a state of the gateway, which has no event to wait on)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


async def test_an_entry_larger_than_max_bytes_is_not_stored(tmp_path, up):
    """The model `tiny-cache` allows 200 bytes: its answers never fit, every request misses."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        assert (await ask(client, model="tiny-cache"))[0] == "miss"
        assert (await ask(client, model="tiny-cache"))[0] == "miss"
        assert len(up.requests) == 2


async def test_a_route_change_makes_old_entries_unreachable(tmp_path, up, http):
    """A new deployment on the model's route: the answer cached before is not served."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        assert (await ask(client))[0] == "miss"
        assert (await ask(client))[0] == "hit"
        admin = {"authorization": f"Bearer {await gw.token('cached', scopes=['gateway:admin'])}"}
        async with http.get(f"{gw.origin}/admin/policy", headers=admin) as r:
            running = await r.json()
        bundle = running["bundle"]
        bundle["models"]["chat"]["deployments"].append(
            {"provider": "up", "model": "upstream-chat-2", "priority": 2}
        )
        change = {"bundle": bundle, "reason": "a fallback", "base_version": running["version"]}
        async with http.put(f"{gw.origin}/admin/policy", json=change, headers=admin) as r:
            assert r.status == 200, await r.text()
            version = (await r.json())["version"]
        await wait_until(lambda: gw.services.policy.version == version)
        assert (await ask(client))[0] == "miss"
        assert (await ask(client))[0] == "hit"
        assert len(up.requests) == 2


async def test_cache_control_no_cache_and_no_store(tmp_path, up):
    """no-cache: the client opts out of being served from the cache (bypass), and its
    fresh answer is stored for the next request; no-store: neither looked up nor stored."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        _, first, _ = await ask(client)
        status, fresh, _ = await ask(client, extra_headers={"Cache-Control": "no-cache"})
        assert status == "bypass" and fresh.id != first.id
        status, again, _ = await ask(client)
        assert status == "hit" and again.id == fresh.id  # the fresh answer replaced the old

        other = [{"role": "user", "content": "not for keeping"}]
        no_store = {"Cache-Control": "no-store"}
        assert (await ask(client, messages=other, extra_headers=no_store))[0] == "bypass"
        assert (await ask(client, messages=other, extra_headers=no_store))[0] == "bypass"
        assert (await ask(client, messages=other))[0] == "miss"
        assert len(up.requests) == 5


async def test_metrics_count_hits_misses_and_bypasses(tmp_path, up, http):
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        await ask(client)
        await ask(client)
        await ask(client, n=2)
        await ask(await gw.openai("plain"))
        async with http.get(f"{gw.origin}/metrics") as r:
            text = await r.text()
    name = "gateway_cache_requests_total"
    assert total(text, name, team="cached", model="chat", result="miss") == 1
    assert total(text, name, team="cached", model="chat", result="hit") == 1
    assert total(text, name, team="cached", model="chat", result="bypass") == 1
    assert total(text, name, team="plain") == 0
    assert total(text, "gateway_cache_unavailable_total") == 0


@pytest.mark.parametrize(
    "body",
    [
        (
            {"error": {"message": "overloaded", "type": "server_error", "param": None}},
            (502, "miss"),  # no answer: a failed attempt (providers/error_answer.py)
        ),
        (
            {"id": "chatcmpl-empty", "object": "chat.completion", "created": 1, "choices": []},
            (200, "miss"),
        ),
    ],
    ids=["error-object", "no-choices"],
)
async def test_an_upstream_200_that_answers_nothing_is_not_stored(tmp_path, up, http, body):
    """An upstream's 200 whose body is an error object, or has no choices, reaches its
    client once (the error object as the gateway's 502); the next identical request goes
    upstream again (a miss), then hits."""
    body, first = body
    up.script([Behaviour("status", status=200, body=body)])
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        headers = {"authorization": f"Bearer {await gw.token('cached')}"}
        request = {"model": "chat", "messages": HELLO}
        async with http.post(f"{gw.base_url}/chat/completions", json=request, headers=headers) as r:
            assert (r.status, r.headers.get(CACHE)) == first
        status, answer, _ = await ask(await gw.openai("cached"))
        assert status == "miss" and answer.choices
        assert (await ask(await gw.openai("cached")))[0] == "hit"
        assert len(up.requests) == 2


async def test_hits_report_the_usage_the_gateway_counted(tmp_path, up):
    """An upstream that reports no usage: the miss's stream gets the gateway's counted
    usage chunk; a stream hit with include_usage gets the same one, a whole-answer hit
    carries it as `usage`, and the hits' ledger rows hold those tokens, marked estimated."""
    up.behave("stream_no_usage")
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        wants_usage = {"include_usage": True}
        status, miss = await ask_stream(client, stream_options=wants_usage)
        counted = miss[-1].usage
        assert status == "miss" and counted is not None and counted.completion_tokens > 0
        # The answer is stored once it is charged, after the client has its [DONE] (here
        # after a count on a thread): the next request may come before that.
        await wait_until(lambda: gw.services.in_flight.count == 0)
        status, replayed = await ask_stream(client, stream_options=wants_usage)
        assert status == "hit" and replayed[-1].usage == counted and not replayed[-1].choices
        status, whole, _ = await ask(client)
        assert status == "hit" and whole.usage == counted
        assert len(up.requests) == 1
    rows = ledger_rows(tmp_path)
    assert [r["cache"] for r in rows] == ["miss", "hit", "hit"]
    for row in rows:
        assert (row["input_tokens"], row["output_tokens"], row["tokens_estimated"]) == (
            counted.prompt_tokens,
            counted.completion_tokens,
            1,
        )


async def test_a_hit_of_counted_tokens_says_they_were_estimated(tmp_path, up):
    """The upstream sent no usage: the miss and every hit, whole or streamed, say
    x-gateway-tokens-estimated: true, as their ledger rows do; a hit of an answer whose
    usage the upstream reported says false."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        reported = [{"role": "user", "content": "reported usage"}]
        assert (await ask(client, messages=reported))[2].headers[ESTIMATED] == "false"
        status, _, raw = await ask(client, messages=reported)
        assert (status, raw.headers[ESTIMATED]) == ("hit", "false")
        up.behave("stream_no_usage")  # no usage, whole or streamed
        status, _, raw = await ask(client)
        assert (status, raw.headers[ESTIMATED]) == ("miss", "true")
        status, _, raw = await ask(client)
        assert (status, raw.headers[ESTIMATED]) == ("hit", "true")
        streamed = await client.chat.completions.with_raw_response.create(
            model="chat", messages=HELLO, stream=True
        )
        assert [c async for c in streamed.parse()]
        assert (streamed.headers[CACHE], streamed.headers[ESTIMATED]) == ("hit", "true")
        assert len(up.requests) == 2
    assert [r["tokens_estimated"] for r in ledger_rows(tmp_path)] == [0, 0, 1, 1, 1]


async def test_a_hits_ledger_row_and_access_line_name_its_deployment(tmp_path, up):
    """A hit's ledger row has the provider, deployment and upstream model of the answer
    it replays (as x-gateway-deployment shows), and its access line says cache hit."""
    log = tmp_path / "access.log"
    async with running_gateway(tmp_path, policy(up.base_url), access_log=str(log)) as gw:
        client = await gw.openai("cached")
        assert (await ask(client))[0] == "miss"
        status, _, raw = await ask(client)
        assert (status, raw.headers["x-gateway-deployment"]) == ("hit", "up/upstream-chat")
        assert raw.headers.get_list("x-gateway-deployment") == ["up/upstream-chat"]
        assert (await ask_stream(client))[0] == "hit"
    for row in ledger_rows(tmp_path):
        assert (row["provider"], row["deployment"], row["upstream_model"]) == (
            "up",
            "up/upstream-chat",
            "upstream-chat",
        ), row["cache"]
    lines = [orjson.loads(line) for line in log.read_text().splitlines()]
    requests = [line for line in lines if line.get("endpoint") == "chat"]
    assert [(r["cache"], r["deployment"], r["attempts"]) for r in requests] == [
        ("miss", "up/upstream-chat", 1),
        ("hit", "up/upstream-chat", 0),
        ("hit", "up/upstream-chat", 0),
    ]
    # A hit's line carries the tokens its ledger row holds, at no cost (as its row says).
    rows = ledger_rows(tmp_path)
    assert [(r["input_tokens"], r["output_tokens"], r["cost_usd"]) for r in requests] == [
        (row["input_tokens"], row["output_tokens"], usd_text(row["cost_nanousd"])) for row in rows
    ]
    assert requests[1]["input_tokens"] > 0 and requests[1]["cost_usd"] == usd_text(0)


async def test_a_hits_server_span_has_its_tokens_and_says_hit(tmp_path, up):
    """A hit has no client span: its server span carries the tokens it saved (as its
    ledger row), a cost of 0 and `gateway.cache`, so a trace reconciles with the ledger."""
    async with traced_gateway(tmp_path, policy(up.base_url)) as (gw, spans):
        client = await gw.openai("cached")
        assert (await ask(client))[0] == "miss"
        assert (await ask(client))[0] == "hit"
        finished = spans.get_finished_spans()
    miss, hit = sorted(
        (s for s in finished if s.kind is SpanKind.SERVER), key=lambda s: s.start_time or 0
    )
    assert len([s for s in finished if s.kind is SpanKind.CLIENT]) == 1
    assert (miss.attributes["gateway.cache"], hit.attributes["gateway.cache"]) == ("miss", "hit")
    for name in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
        assert hit.attributes[name] == miss.attributes[name] > 0
    assert hit.attributes["gateway.cost.usd"] == 0
    assert miss.attributes["gateway.cost.usd"] > 0


async def edit_policy(gw: RunningGateway, http: Any, change: Any) -> None:
    """Apply `change(bundle)` through the admin API and wait until it is in force."""
    admin = {"authorization": f"Bearer {await gw.token('cached', scopes=['gateway:admin'])}"}
    async with http.get(f"{gw.origin}/admin/policy", headers=admin) as r:
        running = await r.json()
    bundle = running["bundle"]
    change(bundle)
    body = {"bundle": bundle, "reason": "cache test", "base_version": running["version"]}
    async with http.put(f"{gw.origin}/admin/policy", json=body, headers=admin) as r:
        assert r.status == 200, await r.text()
        version = (await r.json())["version"]
    await wait_until(lambda: gw.services.policy.version == version)


async def test_a_lowered_ttl_applies_to_entries_already_stored(tmp_path, up, http):
    """Stored under ttl 600, the team's ttl edited to 1: a second later the entry is a
    miss, though it was stored for ten minutes."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        assert (await ask(client))[0] == "miss"
        await edit_policy(gw, http, lambda b: b["teams"]["cached"]["cache"].update(ttl_s=1))
        assert (await ask(client))[0] == "hit"
        await asyncio.sleep(1.1)
        assert (await ask(client))[0] == "miss"
        assert len(up.requests) == 2


async def test_a_changed_output_cap_default_is_a_new_key(tmp_path, up, http):
    """The team's max_tokens_default goes upstream as the cap of a request that sets
    none (the team has a budget): after it changes, the answer cut under the old cap is
    not served; the upstream is asked again, with the new cap."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("cached")
        await edit_policy(gw, http, lambda b: b["teams"]["cached"].update(max_tokens_default=50))
        assert (await ask(client))[0] == "miss"
        assert (await ask(client))[0] == "hit"
        await edit_policy(gw, http, lambda b: b["teams"]["cached"].update(max_tokens_default=10))
        assert (await ask(client))[0] == "miss"
        assert [r.json.get("max_completion_tokens") for r in up.requests] == [50, 10]
        assert (await ask(client, max_completion_tokens=10))[0] == "hit"  # the same body
