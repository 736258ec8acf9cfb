"""The metrics recorder on its own registry: what one finished request adds."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from gateway.auth.principal import Principal
from gateway.context import Outcome, RequestContext
from gateway.policy.compiled import Deployment, ModelRoute, Policy
from gateway.policy.store import PolicyStore
from gateway.providers.base import UpstreamFailure
from gateway.routing.failover import HealthBoard
from gateway.routing.tries import Try
from gateway.telemetry.metrics import APPLY_AFTER_S, Metrics
from gateway.telemetry.multiproc import MULTIPROC_ENV
from gateway.usage.pricing import PriceSource, UnitPrices
from gateway.usage.usage import Usage
from tests.support.metrics import samples, total

A = Deployment("a", "model-a", 1.0, 1)


def store(version: int | None = 3) -> PolicyStore:
    route = ModelRoute("fast", (A,), None, None)  # type: ignore[arg-type]  # routing unused here
    policy = Policy(providers={}, models={"fast": route}, teams={"demo": None}, hash="h")  # type: ignore[dict-item]
    return PolicyStore(policy, version)


def request(status: int = 200, code: str | None = None, **fields: object) -> RequestContext:
    ctx = RequestContext(request_id="req_abc", endpoint="chat", model="fast")
    ctx.principal = Principal("demo", "alice", None, frozenset(), "iss", 0.0)
    for name, value in fields.items():
        setattr(ctx, name, value)
    if status != 200:
        ctx.end(status, Outcome.REFUSED, code)
    return ctx


def scrape(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_one_answered_request():
    metrics = Metrics(store())
    metrics.record(
        request(
            deployment=A,
            usage=Usage(10, 20),
            first_byte_s=0.3,
            tries=(Try(A, UpstreamFailure("x", status=429)), Try(A, is_answer=True)),
        )
    )
    text = scrape(metrics)
    labels = {"team": "demo", "model": "fast", "deployment": "a/model-a"}
    assert total(text, "gateway_requests_total", status="200", endpoint="chat", **labels) == 1
    assert total(text, "gateway_tokens_total", direction="input", **labels) == 10
    assert total(text, "gateway_tokens_total", direction="output", **labels) == 20
    assert total(text, "gateway_time_to_first_token_seconds_count") == 1
    assert total(text, "gateway_time_to_first_token_seconds_bucket", le="0.5") == 1
    assert total(text, "gateway_time_to_first_token_seconds_bucket", le="0.25") == 0
    assert total(text, "gateway_upstream_attempts_total", result="rate_limited") == 1
    assert total(text, "gateway_upstream_attempts_total", result="ok") == 1
    # A retried after its 429 and answered: a retry, not a failover.
    assert total(text, "gateway_upstream_failovers_total") == 0
    assert total(text, "gateway_policy_version") == 3
    assert "req_abc" not in text and "alice" not in text


def test_a_move_to_another_deployment_is_a_failover_a_retry_is_not():
    """Failovers count leaving a failed deployment for another, never retrying it."""
    b = Deployment("b", "model-b", 1.0, 2)
    metrics = Metrics(store())
    failure = UpstreamFailure("x", status=503)
    metrics.record(request(tries=(Try(A, failure), Try(A, failure), Try(A, is_answer=True))))
    metrics.record(request(tries=(Try(A, failure), Try(b, is_answer=True))))
    text = scrape(metrics)
    assert total(text, "gateway_upstream_failovers_total") == 1
    assert total(text, "gateway_upstream_failovers_total", deployment="a/model-a") == 1
    assert total(text, "gateway_upstream_attempts_total", result="server_error") == 3


def test_time_to_first_token_is_the_answering_deployments_own():
    """After a failover, the time the first deployment took is not charged to the one
    that answered: measured from the answering attempt's start."""
    b = Deployment("b", "model-b", 1.0, 2)
    metrics = Metrics(store())
    ctx = request(deployment=b, first_byte_s=1.2)
    ctx.started = 100.0  # arrival; A timed out after 1 s, B began at 101.0
    timed_out = UpstreamFailure("x", is_timeout=True)
    ctx.tries = (
        Try(A, timed_out, started_s=100.0),
        Try(b, is_answer=True, started_s=101.0),
    )
    metrics.record(ctx)
    text = scrape(metrics)
    bucket = "gateway_time_to_first_token_seconds_bucket"
    assert total(text, bucket, deployment="b/model-b", le="0.25") == 1  # 0.2 s, not 1.2 s
    assert total(text, bucket, deployment="b/model-b", le="0.1") == 0


@pytest.mark.parametrize(
    ("code", "kind"),
    [("rate_limit_exceeded", "rate_limit"), ("insufficient_quota", "budget")],
)
def test_a_429_from_a_usage_control_is_a_refusal_of_its_kind(code, kind):
    metrics = Metrics(store())
    metrics.record(request(429, code))
    metrics.record(request(429, "upstream_said_so"))
    text = scrape(metrics)
    assert total(text, "gateway_refusals_total", team="demo", kind=kind) == 1
    assert total(text, "gateway_refusals_total") == 1
    assert total(text, "gateway_requests_total", status="429") == 2


def test_the_policy_version_follows_the_store():
    policy = store(3)
    metrics = Metrics(policy)
    policy.swap(policy.current(), 4)
    assert total(scrape(metrics), "gateway_policy_version") == 3  # not yet seen
    assert total(metrics.render().decode(), "gateway_policy_version") == 4  # a scrape looks
    assert "gateway_policy_version" in scrape(Metrics(store(None)))  # none loaded yet: 0


def test_the_health_board_reports_each_cooldown_once():
    """A deployment that starts cooling is counted once, not again while it cools."""
    metrics = Metrics(store())
    now = [100.0]
    board = HealthBoard(clock=lambda: now[0], on_cooldown=metrics.cooled)
    route = ModelRoute("fast", (A,), _Routing(), None)  # type: ignore[arg-type]
    failure = UpstreamFailure("x", status=500)
    board.failed(A, route, failure)  # 1 of 2: not cooling yet
    assert total(scrape(metrics), "gateway_upstream_cooldowns_total") == 0
    board.failed(A, route, failure)  # 2 of 2: cooling
    board.failed(A, route, failure)  # still cooling: not a new cooldown
    assert total(scrape(metrics), "gateway_upstream_cooldowns_total", deployment="a/model-a") == 1
    now[0] += 61
    board.failed(A, route, failure)  # cooled off, failed again: a second cooldown
    assert total(scrape(metrics), "gateway_upstream_cooldowns_total") == 2


class _Routing:
    failure_threshold = 2
    cooldown_s = 60.0


def series(metrics: Metrics, name: str) -> list[dict[str, str]]:
    return [found for sample, found, _ in samples(scrape(metrics)) if sample == name]


def test_a_request_without_usage_or_cost_adds_no_token_or_cost_series():
    """A refusal counts as a request; token and cost series appear only once something
    with the same labels used tokens or cost money, then with its own values."""
    metrics = Metrics(store())
    metrics.record(request(401, "invalid_api_key", deployment=A))
    assert series(metrics, "gateway_tokens_total") == []
    assert series(metrics, "gateway_cost_usd_total") == []
    assert total(scrape(metrics), "gateway_requests_total", status="401") == 1
    prices = UnitPrices(10**9, 10**9, 0, 0, 0, PriceSource.POLICY)
    for _ in range(2):
        metrics.record(request(deployment=A, usage=Usage(3, 4), prices=prices, cost_nanousd=7))
    text = scrape(metrics)
    assert total(text, "gateway_requests_total", status="200") == 2
    assert total(text, "gateway_requests_total", status="401") == 1
    assert total(text, "gateway_tokens_total", direction="input") == 6
    assert total(text, "gateway_cost_usd_total") == pytest.approx(14e-9)
    assert total(text, "gateway_request_duration_seconds_count", endpoint="chat") == 3


async def test_one_process_counts_in_batches_and_a_scrape_counts_what_waits():
    """On the event loop a finished request is counted with the next batch; /metrics
    (render) counts what waits first, so a scrape never misses a finished request."""
    metrics = Metrics(store())
    metrics.record(request(deployment=A, usage=Usage(1, 2)))
    metrics.record(request(deployment=A, usage=Usage(1, 2)))
    assert total(scrape(metrics), "gateway_requests_total") == 0  # not counted yet
    text = metrics.render().decode()
    assert total(text, "gateway_requests_total", status="200") == 2
    assert total(text, "gateway_tokens_total", direction="output") == 4


async def test_a_batch_is_counted_soon_without_a_scrape():
    metrics = Metrics(store())
    metrics.record(request(deployment=A))
    await asyncio.sleep(APPLY_AFTER_S * 4)
    assert total(scrape(metrics), "gateway_requests_total") == 1
    metrics.record(request(429, "rate_limit_exceeded"))  # a new batch after the first
    await asyncio.sleep(APPLY_AFTER_S * 4)
    assert total(scrape(metrics), "gateway_requests_total", status="429") == 1


async def test_under_workers_each_request_is_counted_at_once(tmp_path, monkeypatch):
    """A scrape of one worker cannot make the others count what waits: each worker
    counts at once."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    metrics = Metrics(store())
    metrics.record(request(deployment=A))
    assert total(scrape(metrics), "gateway_requests_total") == 1


async def test_a_request_that_fails_to_count_does_not_cost_the_batch(caplog):
    metrics = Metrics(store())
    broken = request(deployment=A)
    broken.tries = None  # type: ignore[assignment]  # a bug elsewhere: not iterable
    broken.guardrail_hits = 7  # type: ignore[assignment]
    metrics.record(broken)
    metrics.record(request(deployment=A))
    text = metrics.render().decode()
    assert total(text, "gateway_requests_total") >= 1
    assert "counting a request failed" in caplog.text


_FINISHED = st.tuples(
    st.sampled_from([200, 429]),
    st.none() | st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    st.integers(0, 10**9),  # nano-USD; 0 with prices: no cost series
    st.booleans(),  # priced
)


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(_FINISHED, max_size=12))
async def test_a_batch_adds_up_to_what_its_requests_add_one_by_one(batch):
    """A batch adds each label set's requests, tokens and cost once: the same totals
    as counting its requests one at a time (a scrape after each)."""
    batched, one_by_one = Metrics(store()), Metrics(store())
    prices = UnitPrices(10**9, 10**9, 0, 0, 0, PriceSource.POLICY)

    def finished(status, usage, nanousd, priced):
        fields = {"deployment": A, "usage": None if usage is None else Usage(*usage)}
        if priced:
            fields.update(prices=prices, cost_nanousd=nanousd)
        return request(status, None if status == 200 else "rate_limit_exceeded", **fields)

    for facts in batch:
        batched.record(finished(*facts))
        one_by_one.record(finished(*facts))
        one_by_one.render()
    got, want = counted(batched), counted(one_by_one)
    assert [(n, labels) for n, labels, _ in got] == [(n, labels) for n, labels, _ in want]
    for (name, _, value), (_, _, expected) in zip(got, want, strict=True):
        assert value == pytest.approx(expected, rel=1e-12), name


def counted(metrics: Metrics) -> list[tuple[str, dict[str, str], float]]:
    """The samples that count what requests did (not when: no duration, no timestamp,
    nothing of the process)."""
    return [
        found
        for found in samples(metrics.render().decode())
        if found[0].startswith("gateway_")
        and not found[0].endswith("_created")
        and not (
            found[0].startswith("gateway_request_duration")
            and found[0].endswith(("_sum", "_bucket"))
        )
    ]
