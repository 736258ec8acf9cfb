"""Tries: what one request's failover loop did, readable even after a cancel."""

import time

from gateway.policy.compiled import Deployment
from gateway.providers.base import UpstreamFailure
from gateway.routing.tries import Tries, Try

A = Deployment("p", "a", weight=1, priority=1)
B = Deployment("p", "b", weight=1, priority=1)


def test_no_tries():
    tries = Tries()
    assert (tries.count, tries.last_deployment, tries.failures) == (0, None, ())
    assert tries.failed_deployments == ()


def test_a_failure_then_an_answer():
    tries, boom = Tries(), UpstreamFailure("boom", status=500)
    tries.started(A)
    tries.failed(boom)
    tries.started(B)
    tries.answered()
    assert tries.count == 2
    assert tries.last_deployment is B
    assert tries.failures == (boom,)
    assert [t._replace(started_s=None) for t in tries.all] == [
        Try(A, boom),
        Try(B, is_answer=True),
    ]
    first, second = (t.started_s for t in tries.all)
    assert first is not None and second is not None and first <= second  # kept through both


def test_each_attempt_keeps_when_it_started():
    """What the answering deployment's time to first token is measured from."""
    tries = Tries()
    before = time.perf_counter()
    tries.started(A)
    tries.answered()
    started_s = tries.all[0].started_s
    assert started_s is not None and before <= started_s <= time.perf_counter()


def test_an_attempt_cut_midway_is_counted_with_no_outcome():
    """A client that hung up during an attempt: it counts, neither failed nor answered."""
    tries = Tries()
    tries.started(A)
    assert tries.count == 1 and tries.last_deployment is A
    assert [t._replace(started_s=None) for t in tries.all] == [Try(A)]


def test_failures_per_deployment_and_each_failed_deployment_once():
    tries = Tries()
    first, second, third = (UpstreamFailure(str(i)) for i in range(3))
    for deployment, failure in ((A, first), (B, second), (A, third)):
        tries.started(deployment)
        tries.failed(failure)
    assert tries.failures_on(A) == [first, third]
    assert tries.failures_on(B) == [second]
    assert tries.failed_deployments == (A, B)
