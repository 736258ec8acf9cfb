"""Routing choice: priority first, weights within it, cooling and tried deployments avoided."""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.compiled import Deployment
from gateway.routing.choice import (
    choose_attempt,
    choose_deployment,
    soonest_back,
    weighted_pick,
)
from gateway.routing.health import HEALTHY, Health

A = Deployment("p", "a", weight=3, priority=1)
B = Deployment("p", "b", weight=1, priority=1)
C = Deployment("q", "c", weight=1, priority=2)
ALL = (A, B, C)


def healthy(_: Deployment) -> Health:
    return HEALTHY


def cooling(*which: Deployment):
    def health_of(d: Deployment) -> Health:
        return Health(3, 100.0) if d in which else HEALTHY

    return health_of


def test_weights_split_traffic_within_the_best_priority():
    """Weight 3 vs 1 sends three quarters of picks to the heavier deployment; priority 2 none."""
    picks = Counter(choose_deployment(ALL, healthy, 0.0, (), rand=i / 1000) for i in range(1000))
    assert picks[A] == 750
    assert picks[B] == 250
    assert picks[C] == 0


@pytest.mark.parametrize(("rand", "expected"), [(0.0, A), (0.7499, A), (0.75, B), (0.999999, B)])
def test_weighted_pick_boundaries(rand, expected):
    assert weighted_pick([A, B], rand) is expected


def test_lower_priority_only_when_every_higher_one_is_cooling():
    assert choose_deployment(ALL, cooling(A), 0.0, (), 0.0) is B
    assert choose_deployment(ALL, cooling(A, B), 0.0, (), 0.0) is C


def test_lower_priority_when_higher_ones_already_failed_this_request():
    assert choose_deployment(ALL, healthy, 0.0, (A, B), 0.0) is C


def test_tried_deployments_are_avoided_while_others_remain():
    assert choose_deployment(ALL, healthy, 0.0, (A,), 0.0) is B


def test_retry_may_return_to_a_tried_deployment_when_all_were_tried():
    assert choose_deployment((A,), healthy, 0.0, (A,), 0.0) is A


def test_none_when_every_deployment_is_cooling():
    assert choose_deployment(ALL, cooling(A, B, C), 0.0, (), 0.0) is None


def test_cooldown_ends_at_its_time():
    assert choose_deployment((A,), cooling(A), 100.0, (), 0.0) is A


def until(**ends: float):
    """Health where deployment `model` cools until ends[model] (0: healthy)."""

    def health_of(d: Deployment) -> Health:
        return Health(3, ends.get(d.model, 0.0))

    return health_of


def test_panic_mode_tries_the_deployment_that_recovers_soonest():
    """Every deployment cooling and none tried yet: one try on the soonest back."""
    assert choose_attempt(ALL, until(a=50.0, b=20.0, c=90.0), 10.0, (), 0.0) is B


def test_panic_mode_prefers_a_lower_priority_deployment_that_recovers_sooner():
    assert choose_attempt(ALL, until(a=50.0, b=50.0, c=20.0), 10.0, (), 0.0) is C


def test_panic_ties_go_by_priority_then_weight():
    same = until(a=50.0, b=50.0, c=50.0)
    assert choose_attempt(ALL, same, 10.0, (), 0.0) is A
    assert choose_attempt(ALL, same, 10.0, (), 0.8) is B


def test_no_panic_once_the_request_has_tried_a_deployment():
    """The request's own failures cooled the model: they are its answer."""
    assert choose_attempt(ALL, until(a=50.0, b=20.0, c=90.0), 10.0, (A,), 0.0) is None


def test_choose_attempt_is_choose_deployment_while_any_is_available():
    assert choose_attempt(ALL, cooling(A), 0.0, (), 0.0) is B
    assert choose_attempt(ALL, healthy, 0.0, (A, B), 0.0) is C


def test_choose_attempt_with_no_deployments_is_none():
    assert choose_attempt((), healthy, 0.0, (), 0.0) is None


@st.composite
def situations(draw):
    """Deployments with random weights, priorities and cooldown ends; a tried subset."""
    n = draw(st.integers(min_value=1, max_value=5))
    deployments = tuple(
        Deployment(
            "p",
            f"m{i}",
            weight=draw(st.sampled_from([0.5, 1.0, 3.0])),
            priority=draw(st.integers(min_value=1, max_value=3)),
        )
        for i in range(n)
    )
    ends = {d: draw(st.sampled_from([0.0, 5.0, 15.0, 20.0, 40.0])) for d in deployments}
    tried = tuple(d for d in deployments if draw(st.booleans()))
    rand = draw(st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
    return deployments, ends, tried, rand


@settings(deadline=None)  # a busy shared machine must not fail a rule
@given(situations())
def test_choose_attempt_rules_hold_in_every_situation(situation):
    """Never a cooling deployment unless panicking; untried first; best priority; panic = soonest."""
    deployments, ends, tried, rand = situation
    now = 10.0

    def health_of(d: Deployment) -> Health:
        return Health(3, ends[d])

    chosen = choose_attempt(deployments, health_of, now, tried, rand)
    available = [d for d in deployments if ends[d] <= now]
    if not available:
        if tried:
            assert chosen is None
        else:
            assert chosen is not None
            assert ends[chosen] == min(ends.values())
            assert chosen is soonest_back(deployments, health_of, rand)
        return
    assert chosen in available
    untried = [d for d in available if d not in tried]
    pool = untried or available
    assert chosen in pool
    assert chosen.priority == min(d.priority for d in pool)
