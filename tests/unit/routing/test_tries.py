"""Tries: what one request's failover loop did, readable even after a cancel."""

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
    assert tries.all == (Try(A, boom), Try(B, is_answer=True))


def test_an_attempt_cut_midway_is_counted_with_no_outcome():
    """A client that hung up during an attempt: it counts, neither failed nor answered."""
    tries = Tries()
    tries.started(A)
    assert tries.count == 1 and tries.last_deployment is A
    assert tries.all == (Try(A),)


def test_failures_per_deployment_and_each_failed_deployment_once():
    tries = Tries()
    first, second, third = (UpstreamFailure(str(i)) for i in range(3))
    for deployment, failure in ((A, first), (B, second), (A, third)):
        tries.started(deployment)
        tries.failed(failure)
    assert tries.failures_on(A) == [first, third]
    assert tries.failures_on(B) == [second]
    assert tries.failed_deployments == (A, B)
