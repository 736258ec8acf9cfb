"""Budgets, rate limits and concurrency through the gateway (in-process backend), with the
official openai SDK as the client."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
import sqlalchemy as sa

from gateway.limits.backend import Hold, LimitsBackend
from gateway.limits.plan import Actual, Estimate, Plan, build_plan
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.ledger_rows import insert_ledger_only, ledger_row
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat:
    deployments: [{{provider: up, model: upstream-chat}}]
    price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
  embed:
    deployments: [{{provider: up, model: upstream-embed}}]
routing: {{timeout_s: 10, attempt_timeout_s: 5, retries: 0}}
teams:
  demo: {{models: ["*"]}}
  nomodels: {{models: []}}
  narrow: {{models: ["embed"], limits: {{rpm: 7}}}}
  budgeted:
    models: ["*"]
    max_tokens_default: 50
    budgets: [{{period: day, tokens: {day_tokens}}}, {{period: month, usd: 100}}]
    limits: {{rpm: 1000, tpm: {tpm}, concurrency: {concurrency}}}
    per_user: {{rpm: 500}}
"""


def policy(
    base: str, day_tokens: int = 100_000, tpm: int = 1_000_000, concurrency: int = 50
) -> str:
    return POLICY.format(base=base, day_tokens=day_tokens, tpm=tpm, concurrency=concurrency)


class Recording:
    """Wraps the running backend: every reserve and settle it sees, by hold id."""

    def __init__(self, inner: LimitsBackend) -> None:
        self.inner = inner
        self.reserved: list[Hold] = []
        self.settled: list[tuple[Hold, Actual | None]] = []

    def reserve_now(self, plan: Plan, hold_id: str, now_ms: int):  # type: ignore[no-untyped-def]
        found = self.inner.reserve_now(plan, hold_id, now_ms)
        if isinstance(found, Hold):
            self.reserved.append(found)
        return found

    async def try_reserve(self, plan: Plan, hold_id: str, now_ms: int):  # type: ignore[no-untyped-def]
        found = await self.inner.try_reserve(plan, hold_id, now_ms)
        if isinstance(found, Hold):
            self.reserved.append(found)
        return found

    def settle(self, hold: Hold, actual: Actual | None, now_ms: int | None = None) -> None:
        self.settled.append((hold, actual))
        self.inner.settle(hold, actual, now_ms)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


async def counters(gw: RunningGateway, team: str = "budgeted", subject: str = "tester"):  # type: ignore[no-untyped-def]
    rules = gw.services.policy.current().teams[team]
    plan = build_plan(rules, subject, Estimate(0, 0), gw.services.limits.clock())
    return plan, await gw.services.limits.snapshot(plan)


@pytest.fixture
async def up():
    async with MockUpstream("up") as upstream:
        yield upstream


async def test_every_inference_route_is_reserved_and_settled(tmp_path, up):
    """Chat, completions, embeddings and responses: each reserves once and settles once,
    to its true usage; nothing stays reserved."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        recording = Recording(gw.services.limits.backend)
        gw.services.limits.backend = recording  # type: ignore[assignment]
        client = await gw.openai("budgeted")
        await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        await client.completions.create(model="chat", prompt="hi there", max_tokens=5)
        await client.embeddings.create(model="embed", input="hello")
        await client.responses.create(model="chat", input="hi", max_output_tokens=20)
        assert len(recording.reserved) == 4
        assert [h.id for h, _ in recording.settled] == [h.id for h in recording.reserved]
        assert all(actual is not None and actual.tokens > 0 for _, actual in recording.settled)
        _, snap = await counters(gw)
        used = sum(a.tokens for _, a in recording.settled if a is not None)
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (used, 0)


async def test_limited_answers_carry_openai_ratelimit_headers_streams_included(tmp_path, up):
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("budgeted")
        raw = await client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=10
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "500"  # the user's, tighter
        assert raw.headers["x-ratelimit-remaining-requests"] == "499"
        assert raw.headers["x-ratelimit-limit-tokens"] == "1000000"
        assert raw.headers["x-ratelimit-reset-requests"] == "120ms"
        async with client.chat.completions.with_streaming_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        ) as streamed:
            assert streamed.headers["x-ratelimit-remaining-requests"] == "498"
            async for _ in streamed.iter_lines():
                pass
        plain = await (await gw.openai("demo")).chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        assert "x-ratelimit-limit-requests" not in plain.headers


async def test_answers_refused_before_the_limits_carry_the_rate_keys_as_they_stand(tmp_path, up):
    """A malformed body, an unknown model, a model the team may not use: refused before
    anything is reserved, and each answer still carries the x-ratelimit-* headers, taking
    nothing. An unlimited team's refusals and a bad token's carry none."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        narrow = await gw.openai("narrow")  # rpm 7: one request frees after ~8.6 s
        raw = await narrow.embeddings.with_raw_response.create(model="embed", input="hi")
        assert raw.headers["x-ratelimit-remaining-requests"] == "6"
        refusals: list[openai.APIStatusError] = []
        with pytest.raises(openai.BadRequestError) as bad_type:
            await narrow.completions.create(model="embed", prompt="hi", max_tokens=-1)
        refusals.append(bad_type.value)
        with pytest.raises(openai.BadRequestError) as no_messages:
            await narrow.chat.completions.create(model="embed", messages="hi")  # type: ignore[arg-type]
        refusals.append(no_messages.value)
        with pytest.raises(openai.NotFoundError) as unknown_model:
            await narrow.embeddings.create(model="nosuch", input="hi")
        refusals.append(unknown_model.value)
        with pytest.raises(openai.PermissionDeniedError) as not_allowed:
            await narrow.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
        refusals.append(not_allowed.value)
        for refused in refusals:
            headers = refused.response.headers
            assert headers["x-ratelimit-limit-requests"] == "7"
            assert headers["x-ratelimit-remaining-requests"] == "6"  # nothing taken
            assert headers["x-ratelimit-reset-requests"].endswith("s")
            assert "x-ratelimit-limit-tokens" not in headers  # the team has no tpm
        raw = await narrow.embeddings.with_raw_response.create(model="embed", input="hi")
        assert raw.headers["x-ratelimit-remaining-requests"] == "5"  # the refusals took none
        with pytest.raises(openai.BadRequestError) as with_tokens:
            await (await gw.openai("budgeted")).chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=-1
            )
        headers = with_tokens.value.response.headers
        assert headers["x-ratelimit-limit-requests"] == "500"  # the user's, tighter
        assert headers["x-ratelimit-limit-tokens"] == "1000000"
        assert headers["x-ratelimit-remaining-tokens"] == "1000000"
        with pytest.raises(openai.BadRequestError) as unlimited:
            await (await gw.openai("demo")).chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=-1
            )
        assert "x-ratelimit-limit-requests" not in unlimited.value.response.headers
        bad_token = openai.AsyncOpenAI(base_url=gw.base_url, api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as unauthenticated:
            await bad_token.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
        await bad_token.close()
        assert "x-ratelimit-limit-requests" not in unauthenticated.value.response.headers


async def test_a_limited_teams_model_list_carries_the_rate_keys_taking_nothing(tmp_path, up):
    """GET /v1/models and /v1/models/{model} are answers of a limited team too: they carry
    x-ratelimit-* as the keys stand and take nothing from them. An unlimited team's don't."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        narrow = await gw.openai("narrow")  # rpm 7
        for _ in range(2):
            listed = await narrow.models.with_raw_response.list()
            assert [m.id for m in listed.parse().data] == ["embed"]
            assert listed.headers["x-ratelimit-limit-requests"] == "7"
            assert listed.headers["x-ratelimit-remaining-requests"] == "7"
            assert "x-ratelimit-limit-tokens" not in listed.headers  # no tpm
            one = await narrow.models.with_raw_response.retrieve("embed")
            assert one.headers["x-ratelimit-remaining-requests"] == "7"
        raw = await narrow.embeddings.with_raw_response.create(model="embed", input="hi")
        assert raw.headers["x-ratelimit-remaining-requests"] == "6"
        listed = await narrow.models.with_raw_response.list()
        assert listed.headers["x-ratelimit-remaining-requests"] == "6"  # what the request took
        budgeted = await (await gw.openai("budgeted")).models.with_raw_response.list()
        assert budgeted.headers["x-ratelimit-limit-requests"] == "500"  # the user's, tighter
        assert budgeted.headers["x-ratelimit-limit-tokens"] == "1000000"
        unlimited = await (await gw.openai("demo")).models.with_raw_response.list()
        assert "x-ratelimit-limit-requests" not in unlimited.headers
        with pytest.raises(openai.NotFoundError) as unknown:  # a refusal: the same headers
            await narrow.models.retrieve("nosuch")
        assert unknown.value.response.headers["x-ratelimit-remaining-requests"] == "6"


async def test_a_herd_of_first_requests_reads_each_periods_usage_once(tmp_path, up):
    """After a restart every counter must be rebuilt from the ledger; the 30 requests
    that arrive together share one read per period (day tokens, month USD), instead of
    each summing the ledger while all of them wait. The budget still counts that usage."""
    async with running_gateway(tmp_path, policy(up.base_url, day_tokens=1_000_000)) as gw:
        now = int(time.time() * 1000)
        rows = [
            ledger_row(id=f"old-{n}", team="budgeted", at_ms=now - 1000, input_tokens=10)
            for n in range(20_000)
        ]  # enough rows that a sum takes a while
        await insert_ledger_only(gw.services.engine, rows)
        sums: list[str] = []

        def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
            if "sum(" in statement.lower() and "usage_ledger" in statement:
                sums.append(statement)

        sa.event.listen(gw.services.engine.sync_engine, "before_cursor_execute", count)
        client = await gw.openai("budgeted")
        hi = [{"role": "user", "content": "hi"}]
        await asyncio.gather(
            *(
                client.chat.completions.create(model="chat", messages=hi, max_tokens=5)
                for _ in range(30)
            )
        )
        # The team's day and month, once each (one request arriving between the two
        # reads and their seed may start one more round: a rare 4; each alone: 60).
        assert 2 <= len(sums) <= 4
        _, snap = await counters(gw)
        assert snap.budgets[0] is not None and snap.budgets[0].used >= 20_000 * 10


async def counting_client(gw) -> tuple[openai.AsyncOpenAI, list[httpx.Request]]:
    """The openai SDK with its own retries (2), and every HTTP request it sends."""
    sent: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request)

    client = openai.AsyncOpenAI(
        base_url=gw.base_url,
        api_key=await gw.token("budgeted"),
        max_retries=2,
        http_client=httpx.AsyncClient(event_hooks={"request": [count]}),
    )
    return client, sent


async def test_an_exhausted_budget_is_429_insufficient_quota_and_the_sdk_does_not_retry(
    tmp_path, up
):
    """The day budget holds 100 tokens: a request estimated at 60 passes, the next is
    refused naming the budget and its reset, and the SDK sends it once only."""
    up.behave(Behaviour(prompt_tokens=10, completion_tokens=50))
    async with running_gateway(tmp_path, policy(up.base_url, day_tokens=100)) as gw:
        client, sent = await counting_client(gw)
        await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
        await client.close()
        assert len(sent) == 2
        error = refused.value
        assert (error.type, error.code) == ("insufficient_quota", "insufficient_quota")
        assert error.response.headers["x-should-retry"] == "false"
        assert "retry-after" not in error.response.headers
        # the refusal took nothing: the rate keys as the first request left them
        assert error.response.headers["x-ratelimit-limit-requests"] == "500"  # the user's
        assert error.response.headers["x-ratelimit-remaining-requests"] == "499"
        assert error.response.headers["x-ratelimit-limit-tokens"] == "1000000"
        assert 999_940 <= int(error.response.headers["x-ratelimit-remaining-tokens"]) <= 10**6
        assert (
            "day token budget of team 'budgeted'" in error.message and "resets at" in error.message
        )
        assert len(up.requests) == 1


async def test_an_estimate_larger_than_the_whole_budget_is_refused_at_once(tmp_path, up):
    async with running_gateway(tmp_path, policy(up.base_url, day_tokens=100)) as gw:
        client = await gw.openai("budgeted")
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=500
            )
        assert refused.value.code == "insufficient_quota"
        assert "more than the whole day token budget" in refused.value.message
        assert up.requests == []


async def test_responses_instructions_and_tools_count_against_the_budget(tmp_path, up):
    """An agent's system prompt in `instructions`, its tool schemas, its tools' outputs:
    input the upstream bills. A budget sees it, so none of them passes one uncounted."""
    async with running_gateway(tmp_path, policy(up.base_url, day_tokens=1000)) as gw:
        client = await gw.openai("budgeted")
        with pytest.raises(openai.RateLimitError) as refused:
            await client.responses.create(
                model="chat", input="hi", instructions="word " * 3000, max_output_tokens=5
            )
        assert refused.value.code == "insufficient_quota"
        assert "more than the whole day token budget" in refused.value.message
        tool = {"type": "function", "function": {"name": "f", "description": "word " * 3000}}
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], tools=[tool],
                max_tokens=5,
            )  # fmt: skip
        assert refused.value.code == "insufficient_quota"
        called = {"type": "function_call", "call_id": "c1", "name": "fetch", "arguments": "{}"}
        output = {"type": "function_call_output", "call_id": "c1", "output": "word " * 3000}
        with pytest.raises(openai.RateLimitError) as refused:
            await client.responses.create(
                model="chat",
                input=[called, output],
                max_output_tokens=5,  # type: ignore[list-item]
            )
        assert refused.value.code == "insufficient_quota"
        assert up.requests == []


async def test_a_rate_limit_is_retried_by_the_sdk_after_retry_after_and_succeeds(tmp_path, up):
    """tpm 6000 and requests that truly use ~1000 tokens: the 6th waits ~0.6 s; the SDK
    reads retry-after-ms, waits, retries once and gets its answer."""
    up.behave(Behaviour(prompt_tokens=10, completion_tokens=1000))
    async with running_gateway(tmp_path, policy(up.base_url, tpm=6000)) as gw:
        client, sent = await counting_client(gw)
        ask = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000}
        for _ in range(5):
            await client.chat.completions.create(**ask)  # type: ignore[call-overload]
        assert len(sent) == 5
        started = time.monotonic()
        raw = await client.chat.completions.with_raw_response.create(**ask)  # type: ignore[call-overload]
        waited = time.monotonic() - started
        await client.close()
        assert raw.parse().choices[0].message.content
        assert len(sent) == 7  # refused once, retried once
        assert 0.3 < waited < 5


async def test_an_upstream_failure_after_the_reservation_releases_it(tmp_path, up):
    up.behave("status", status=500)
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("budgeted")
        with pytest.raises(openai.APIStatusError):
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
        _, snap = await counters(gw)
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (0, 0)
        assert snap.concurrency == (0,)


async def test_a_stream_the_client_abandons_frees_concurrency_and_is_charged(tmp_path, up):
    up.behave(Behaviour(chunks=40, chunk_delay_s=0.05, prompt_tokens=10, completion_tokens=40))
    async with running_gateway(tmp_path, policy(up.base_url, concurrency=1)) as gw:
        client = await gw.openai("budgeted")
        stream = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        async for _ in stream:
            break
        _, during = await counters(gw)
        assert during.concurrency == (1,)
        await stream.close()
        for _ in range(100):
            _, snap = await counters(gw)
            if snap.concurrency == (0,):
                break
            await asyncio.sleep(0.05)
        assert snap.concurrency == (0,)
        assert snap.budgets[0] is not None
        assert snap.budgets[0].used > 0 and snap.budgets[0].reserved == 0


async def test_concurrency_refuses_the_extra_request_with_a_rate_limit(tmp_path, up):
    up.behave("slow", delay_s=0.5)
    async with running_gateway(tmp_path, policy(up.base_url, concurrency=1)) as gw:
        client = await gw.openai("budgeted")
        first = asyncio.create_task(
            client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "a"}]
            )
        )
        await up.wait_for_requests(1)
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "b"}]
            )
        assert refused.value.code == "rate_limit_exceeded"
        assert refused.value.response.headers["retry-after"] == "1"
        assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "499"
        assert "x-ratelimit-remaining-tokens" in refused.value.response.headers
        await first


async def test_a_team_removed_while_its_request_is_in_flight_still_settles(tmp_path, up):
    up.behave("slow", delay_s=1.0)
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        plan, _ = await counters(gw)
        client = await gw.openai("budgeted")
        task = asyncio.create_task(
            client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "a"}]
            )
        )
        await up.wait_for_requests(1)
        bundle = tmp_path / "policies" / "bundle.yaml"
        text = bundle.read_text()
        bundle.write_text(text[: text.index("  budgeted:")])
        for _ in range(100):
            if "budgeted" not in gw.services.policy.current().teams:
                break
            await asyncio.sleep(0.05)
        assert "budgeted" not in gw.services.policy.current().teams
        await task
        snap = await gw.services.limits.snapshot(plan)
        assert snap.budgets[0] is not None
        assert snap.budgets[0].used > 0 and snap.budgets[0].reserved == 0
        assert snap.concurrency == (0,)


async def test_a_team_with_an_empty_model_list_may_use_no_model(tmp_path, up):
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("nomodels")
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "a"}]
            )


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (-1, "integer_below_min_value"),
        (10**12, "integer_above_max_value"),
        (1e300, "integer_above_max_value"),
        ("10", "invalid_type"),
        (1.5, "invalid_type"),
        (True, "invalid_type"),
    ],
)
async def test_bad_max_tokens_is_a_400_naming_the_field(tmp_path, up, value, code):
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("budgeted")
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "a"}], max_tokens=value
            )
        assert (refused.value.param, refused.value.code) == ("max_tokens", code)
        assert up.requests == []


async def test_the_admin_usage_view_shows_every_budget_and_limit(tmp_path, up, http):
    up.behave(Behaviour(prompt_tokens=10, completion_tokens=5))
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        client = await gw.openai("budgeted")
        await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        admin = {"authorization": f"Bearer {await gw.token('demo', scopes=('gateway:admin',))}"}
        url = f"{gw.origin}/admin/teams/budgeted/usage?user=tester"
        async with http.get(url, headers=admin) as response:
            assert response.status == 200
            view = await response.json()
        day = view["budgets"][0]
        assert (day["period"], day["unit"], day["used"], day["reserved"]) == (
            "day",
            "tokens",
            15,
            0,
        )
        assert day["remaining"] == 100_000 - 15 and day["resets_at"].endswith("T00:00:00.000Z")
        assert (
            view["budgets"][1]["unit"] == "usd" and view["budgets"][1]["limit"] == "100.000000000"
        )
        kinds = {(r["scope"], r["kind"]) for r in view["limits"]}
        assert kinds == {("team", "rpm"), ("team", "tpm"), ("team", "concurrency"), ("user", "rpm")}
        assert view["per_user"] == []  # one user's view holds their counters already
        # the team's view: no user counters, but what each user may spend on their own
        async with http.get(f"{gw.origin}/admin/teams/budgeted/usage", headers=admin) as response:
            team_view = await response.json()
        assert {r["scope"] for r in team_view["limits"]} == {"team"}
        assert team_view["per_user"] == [{"kind": "rpm", "limit": 500}]
        async with http.get(f"{gw.origin}/admin/teams/nobody/usage", headers=admin) as response:
            assert response.status == 404
        empty = f"{gw.origin}/admin/teams/budgeted/usage?user="  # a script's unset variable
        async with http.get(empty, headers=admin) as response:
            error = (await response.json())["error"]
            assert response.status == 400
            assert (error["type"], error["param"]) == ("invalid_request_error", "user")


async def test_an_uncapped_request_goes_upstream_capped_at_the_allowance_it_reserved(tmp_path, up):
    """A team whose budgets count tokens reserves its max_tokens_default for a request
    that sets no cap, and sends that cap upstream: an upstream cannot generate past what
    was reserved. A caller's own cap is forwarded as it is; a team with no token rule
    (rpm only) gets no cap added."""
    async with running_gateway(tmp_path, policy(up.base_url)) as gw:
        budgeted = await gw.openai("budgeted")
        hi = [{"role": "user", "content": "hi"}]
        await budgeted.chat.completions.create(model="chat", messages=hi)
        await budgeted.completions.create(model="chat", prompt="hi")
        await budgeted.responses.create(model="chat", input="hi")
        await budgeted.chat.completions.create(model="chat", messages=hi, max_tokens=7)
        await budgeted.embeddings.create(model="embed", input="hello")
        sent = [r.json for r in up.requests]
        assert sent[0]["max_completion_tokens"] == 50 and "max_tokens" not in sent[0]
        assert sent[1]["max_tokens"] == 50
        assert sent[2]["max_output_tokens"] == 50
        assert sent[3]["max_tokens"] == 7 and "max_completion_tokens" not in sent[3]
        assert "max_tokens" not in sent[4] and "max_completion_tokens" not in sent[4]
        narrow = await gw.openai("narrow")  # rpm only: nothing to overrun
        await narrow.embeddings.create(model="embed", input="hello")
        free = await gw.openai("demo")
        await free.chat.completions.create(model="chat", messages=hi)
        assert "max_completion_tokens" not in up.requests[-1].json


async def test_a_completions_batch_reserves_the_output_of_every_prompt(tmp_path, up):
    """prompt: [p1..pK] generates max_tokens for each prompt (times n): the estimate
    counts them all, so a batch cannot slip past a budget sized for one completion."""
    async with running_gateway(tmp_path, policy(up.base_url, day_tokens=2_000)) as gw:
        recording = Recording(gw.services.limits.backend)
        gw.services.limits.backend = recording  # type: ignore[assignment]
        client = await gw.openai("budgeted")
        await client.completions.create(model="chat", prompt=["a", "b", "c"], max_tokens=30)
        await client.completions.create(model="chat", prompt=[[1, 2], [3]], max_tokens=30, n=2)
        await client.completions.create(model="chat", prompt=[1, 2, 3], max_tokens=30)
        outputs = [h.plan.tokens for h in recording.reserved]
        assert outputs[0] >= 90 and outputs[1] >= 120 and 30 <= outputs[2] < 60
        with pytest.raises(openai.RateLimitError) as refused:
            await client.completions.create(model="chat", prompt=["say a"] * 50, max_tokens=50)
        assert refused.value.code == "insufficient_quota"
        assert "more than the whole day token budget" in refused.value.message
