"""The failover loop on a fake clock: backoff, counting once, panic mode, what Tries reports."""

import asyncio

import pytest

from gateway.errors import UpstreamTimeout, UpstreamUnavailable
from gateway.policy.compiled import Deployment, ModelRoute, RoutingConfig
from gateway.providers.base import UpstreamClientError, UpstreamFailure
from gateway.routing.failover import (
    MIN_ATTEMPT_S,
    HealthBoard,
    attempt_budget,
    call_with_failover,
)
from gateway.routing.health import RETRY_AFTER_CAP_S
from gateway.routing.tries import Tries

A = Deployment("p", "a", weight=1, priority=1)
B = Deployment("p", "b", weight=1, priority=2)


class Clock:
    """Monotonic seconds that move only when the loop sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def route(*deployments: Deployment, **routing) -> ModelRoute:
    config = {"retries": 2, "timeout_s": 10.0, "failure_threshold": 3, "cooldown_s": 30.0}
    config.update(routing)
    return ModelRoute("m", deployments, RoutingConfig(**config), None)


def scripted(outcomes: dict[Deployment, list]):
    """An attempt that plays each deployment's outcomes in order: "ok", or an exception."""
    calls: list[Deployment] = []

    async def attempt(provider, deployment, deadline):
        calls.append(deployment)
        outcome = outcomes[deployment].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return attempt, calls


async def run(model: ModelRoute, attempt, board: HealthBoard, clock: Clock, tries=None):
    return await call_with_failover(
        model,
        lambda d: d,
        board,
        attempt,
        tries=tries if tries is not None else Tries(),
        request_id="req_test",
        rand=lambda: 0.0,
        sleep=clock.sleep,
    )


def fail(status=500, retry_after=None):
    return UpstreamFailure("boom", status=status, retry_after_s=retry_after)


async def test_one_failing_request_counts_once_and_does_not_cool_the_deployment():
    """Three failed attempts of one request are one failure towards failure_threshold=3."""
    clock = Clock()
    board = HealthBoard(clock)
    attempt, calls = scripted({A: [fail(), fail(), fail()]})
    tries = Tries()
    with pytest.raises(UpstreamUnavailable) as caught:
        await run(route(A), attempt, board, clock, tries)
    assert calls == [A, A, A]
    assert board.of(A).consecutive_failures == 1
    assert not board.of(A).is_cooling(clock.now)
    assert tries.count == 3 and len(tries.failures) == 3
    assert "retry-after" not in caught.value.headers  # nothing keeps it away


async def test_separate_requests_each_count():
    clock = Clock()
    board = HealthBoard(clock)
    for _ in range(3):
        attempt, _ = scripted({A: [fail(), fail(), fail()]})
        with pytest.raises(UpstreamUnavailable):
            await run(route(A), attempt, board, clock)
    assert board.of(A).is_cooling(clock.now)


async def test_retries_of_one_deployment_back_off_exponentially():
    clock = Clock()
    attempt, _ = scripted({A: [fail(), fail(), "ok"]})
    deployment, result = await run(route(A), attempt, HealthBoard(clock), clock)
    assert (deployment, result) == (A, "ok")
    assert clock.slept == pytest.approx([0.05, 0.1])  # rand 0: half of 0.1, then of 0.2


async def test_failing_over_to_another_deployment_does_not_wait():
    clock = Clock()
    attempt, calls = scripted({A: [fail()], B: ["ok"]})
    assert (await run(route(A, B), attempt, HealthBoard(clock), clock))[0] is B
    assert clock.slept == []
    assert calls == [A, B]


async def test_an_upstream_retry_after_that_fits_the_deadline_is_honoured():
    clock = Clock()
    attempt, _ = scripted({A: [fail(429, retry_after=1.5), "ok"]})
    await run(route(A), attempt, HealthBoard(clock), clock)
    assert clock.slept == [1.5]


async def test_a_retry_after_past_the_deadline_stops_at_once_and_is_passed_on():
    """No retry the upstream asked us not to make; the client hears when to come back."""
    clock = Clock()
    attempt, calls = scripted({A: [fail(429, retry_after=30.0), "ok"]})
    with pytest.raises(UpstreamUnavailable) as caught:
        await run(route(A), attempt, HealthBoard(clock), clock)
    assert calls == [A]
    assert clock.slept == []
    assert caught.value.headers["retry-after"] == "30"


async def test_a_backoff_that_would_pass_the_deadline_stops_the_request():
    clock = Clock()
    attempt, calls = scripted({A: [fail(), "ok"]})
    with pytest.raises(UpstreamUnavailable):
        await run(route(A, timeout_s=0.04), attempt, HealthBoard(clock), clock)
    assert calls == [A]


async def test_panic_mode_tries_the_soonest_back_when_all_are_cooling():
    """Every deployment cooling: the one that recovers first still gets a try."""
    clock = Clock()
    board = HealthBoard(clock)
    model = route(A, B, failure_threshold=1)
    board.failed(B, model, fail())  # B cools until 30
    clock.now = 5.0
    board.failed(A, model, fail())  # A until 35
    attempt, calls = scripted({B: ["ok"]})
    assert (await run(model, attempt, board, clock))[0] is B
    assert calls == [B]
    assert not board.of(B).is_cooling(clock.now)  # it answered: healthy again


async def test_a_failed_panic_try_is_a_502_with_retry_after_and_no_second_try():
    clock = Clock()
    board = HealthBoard(clock)
    model = route(A, B, failure_threshold=1)
    board.failed(A, model, fail())
    board.failed(B, model, fail())
    clock.now = 10.0
    attempt, calls = scripted({A: [fail()], B: [fail()]})
    with pytest.raises(UpstreamUnavailable) as caught:
        await run(model, attempt, board, clock)
    assert len(calls) == 1
    assert caught.value.headers["retry-after"] == "20"  # the other one is back at 30


async def test_attempts_that_time_out_end_in_504():
    clock = Clock()
    attempt, _ = scripted({A: [TimeoutError(), TimeoutError(), TimeoutError()]})
    with pytest.raises(UpstreamTimeout):
        await run(route(A), attempt, HealthBoard(clock), clock)


async def test_the_callers_own_error_passes_through_and_is_the_answer():
    clock = Clock()
    tries = Tries()
    attempt, _ = scripted({A: [UpstreamClientError(400, "bad")]})
    with pytest.raises(UpstreamClientError):
        await run(route(A, B), attempt, HealthBoard(clock), clock, tries)
    assert tries.count == 1 and tries.all[0].is_answer


async def test_tries_report_an_attempt_cut_by_a_cancel():
    """A client that hangs up mid-attempt: the caller still reads what was tried."""
    clock = Clock()
    board = HealthBoard(clock)
    started = asyncio.Event()

    async def hang(provider, deployment, deadline):
        started.set()
        await asyncio.Event().wait()

    tries = Tries()
    task = asyncio.create_task(run(route(A), hang, board, clock, tries))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tries.count == 1 and tries.last_deployment is A
    assert tries.failures == ()
    assert board.of(A).consecutive_failures == 0  # a cancel is not the deployment's fault


async def test_an_attempt_longer_than_attempt_timeout_is_cut_and_the_next_one_tried():
    """The per-attempt timer (real time, 50 ms) cuts a hung attempt; the next answers."""
    clock = Clock()
    tries = Tries()
    answered: list[Deployment] = []

    async def attempt(provider, deployment, deadline):
        if deployment == A:
            await asyncio.sleep(10)
        answered.append(deployment)
        return "ok"

    model = route(A, B, attempt_timeout_s=0.05)
    deployment, result = await run(model, attempt, HealthBoard(clock), clock, tries)
    assert (deployment, result, answered) == (B, "ok", [B])
    assert [t.failure.is_timeout for t in tries.all if t.failure] == [True]
    assert asyncio.current_task().cancelling() == 0  # the timer's cancel was absorbed


async def test_a_cancel_from_outside_during_an_attempt_is_not_taken_for_a_timeout():
    clock = Clock()
    started = asyncio.Event()

    async def attempt(provider, deployment, deadline):
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(
        run(route(A, B, attempt_timeout_s=5), attempt, HealthBoard(clock), clock)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_day_long_retry_after_is_bounded_in_the_cooldown_and_the_clients_hint():
    """An upstream's `retry-after: 86400` cools its deployment for RETRY_AFTER_CAP_S, and
    the client's retry-after is the gateway's own estimate, within that bound."""
    clock = Clock()
    board = HealthBoard(clock)
    attempt, _ = scripted({A: [fail(429, retry_after=86400.0)]})
    with pytest.raises(UpstreamUnavailable) as caught:
        await run(route(A, failure_threshold=1, cooldown_s=30.0), attempt, board, clock)
    assert caught.value.headers["retry-after"] == str(int(RETRY_AFTER_CAP_S))
    assert board.of(A).is_cooling(clock.now + RETRY_AFTER_CAP_S - 1)
    assert not board.of(A).is_cooling(clock.now + RETRY_AFTER_CAP_S)


async def test_the_clients_retry_after_is_the_soonest_deployment_back_not_the_upstreams():
    """A says a day, B cools for cooldown_s: the model is back when B is."""
    clock = Clock()
    board = HealthBoard(clock)
    attempt, _ = scripted({A: [fail(429, retry_after=86400.0)], B: [fail(503)]})
    model = route(A, B, failure_threshold=1, cooldown_s=30.0, retries=1)
    with pytest.raises(UpstreamUnavailable) as caught:
        await run(model, attempt, board, clock)
    assert caught.value.headers["retry-after"] == "30"


@pytest.mark.parametrize(
    ("remaining", "attempt_timeout", "timeout", "budget"),
    [
        (10.0, 5.0, 10.0, 5.0),  # the attempt's own limit
        (0.3, 5.0, 10.0, 0.3),  # the rest of the request
        (0.0004, 5.0, 10.0, None),  # a timer fired a hair early: no attempt
        (MIN_ATTEMPT_S / 2, 5.0, 10.0, None),  # too little to be answered in
        (0.0, 5.0, 10.0, None),
        (0.01, 5.0, 0.01, 0.01),  # a deadline set under the minimum: its first attempt runs
    ],
)
def test_an_attempt_needs_enough_of_the_deadline_left(remaining, attempt_timeout, timeout, budget):
    assert attempt_budget(remaining, attempt_timeout, timeout) == budget


async def test_no_attempt_starts_with_a_sliver_of_the_deadline_left():
    """A deadline cut (its timer a hair early) leaves 0.3 ms: the next deployment is not
    tried, nor charged a failure, and the 504's deployment is the one that timed out."""
    clock = Clock()
    board = HealthBoard(clock)
    tries = Tries()

    async def attempt(provider, deployment, deadline):
        clock.now = deadline - 0.0003
        raise TimeoutError

    model = route(A, B, timeout_s=0.5, failure_threshold=1)
    with pytest.raises(UpstreamTimeout):
        await run(model, attempt, board, clock, tries)
    assert [t.deployment for t in tries.all] == [A]
    assert tries.last_deployment is A
    assert board.of(B).consecutive_failures == 0


async def test_the_502_says_how_many_deployments_were_tried():
    """`retries: 0` tries one of two: the message does not claim every one failed."""
    clock = Clock()
    attempt, _ = scripted({A: [fail()], B: [fail()]})
    with pytest.raises(UpstreamUnavailable) as caught:
        await run(route(A, B, retries=0), attempt, HealthBoard(clock), clock)
    assert caught.value.message == "No deployment of model 'm' answered (1 of 2 tried)."
    attempt, _ = scripted({A: [fail()], B: [fail()]})
    with pytest.raises(UpstreamUnavailable) as caught:
        await run(route(A, B, retries=1), attempt, HealthBoard(clock), clock)
    assert caught.value.message == "Every deployment of model 'm' failed."


@pytest.mark.parametrize("status", [401, 402, 403, 404])
async def test_a_deployment_that_refused_our_key_is_not_tried_again_in_the_request(status):
    """A wrong key, no credit, no such model: a retry cannot mend it. One try, then 502."""
    clock = Clock()
    attempt, calls = scripted({A: [fail(status), "ok"]})
    with pytest.raises(UpstreamUnavailable):
        await run(route(A, retries=3), attempt, HealthBoard(clock), clock)
    assert calls == [A]
    assert clock.slept == []


@pytest.mark.parametrize("status", [401, 403])
async def test_failover_goes_on_to_others_without_going_back_to_a_refusing_one(status):
    clock = Clock()
    attempt, calls = scripted({A: [fail(status), "ok"], B: [fail(500), fail(500), "ok"]})
    deployment, result = await run(route(A, B, retries=3), attempt, HealthBoard(clock), clock)
    assert (deployment, result, calls) == (B, "ok", [A, B, B, B])


@pytest.mark.parametrize("status", [408, 429, 500, 503])
async def test_passing_failures_are_still_retried_on_the_same_deployment(status):
    clock = Clock()
    attempt, calls = scripted({A: [fail(status), "ok"]})
    assert await run(route(A), attempt, HealthBoard(clock), clock) == (A, "ok")
    assert calls == [A, A]


async def test_a_streams_answer_is_no_success_until_the_caller_says_so():
    """`success_on_answer=False` (a stream): the answer leaves the failure count as it
    was, so failures after the first byte add up; a whole answer resets it."""
    clock = Clock()
    board = HealthBoard(clock)
    model = route(A, B, retries=0, failure_threshold=2)
    board.failed(A, model, fail())
    attempt, _ = scripted({A: ["stream", "whole"]})
    found = await call_with_failover(
        model, lambda d: d, board, attempt, tries=Tries(), request_id="r",
        success_on_answer=False, rand=lambda: 0.0, sleep=clock.sleep,
    )  # fmt: skip
    assert found == (A, "stream")
    board.failed(A, model, fail())  # it broke mid-stream: the second in a row
    assert board.of(A).is_cooling(clock())
    clock.now += 31
    assert await run(model, attempt, board, clock) == (A, "whole")
    assert not board.of(A).is_cooling(clock()) and board.of(A).consecutive_failures == 0


async def test_a_refusal_of_the_requests_size_fails_over_and_cools_nothing():
    """A 429 "Request too large" (is_request_sized) goes to the next deployment, never
    back to the same one, and counts nothing towards the deployment's cooldown: three
    such requests in a row (threshold 3) leave it healthy for every other caller."""
    clock = Clock()
    board = HealthBoard(clock)
    sized = UpstreamFailure("too large", status=429, is_request_sized=True)
    for _ in range(3):
        attempt, calls = scripted({A: [sized], B: ["ok"]})
        assert await run(route(A, B), attempt, board, clock) == (B, "ok")
        assert calls == [A, B]
    assert not board.of(A).is_cooling(clock.now)
    assert board.of(A).consecutive_failures == 0
    # The same three as busy 429s do cool it (the threshold holds for real failures).
    for _ in range(3):
        attempt, calls = scripted({A: [fail(429)], B: ["ok"]})
        await run(route(A, B), attempt, board, clock)
    assert board.of(A).is_cooling(clock.now)


async def test_a_request_too_large_everywhere_is_a_502_after_one_try_each():
    clock = Clock()
    board = HealthBoard(clock)
    sized = UpstreamFailure("too large", status=429, is_request_sized=True)
    attempt, calls = scripted({A: [sized], B: [sized]})
    with pytest.raises(UpstreamUnavailable):
        await run(route(A, B, retries=3), attempt, board, clock)
    assert calls == [A, B]
    assert clock.slept == []
