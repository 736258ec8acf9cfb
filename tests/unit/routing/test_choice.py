"""Routing choice: priority first, weights within it, cooling and tried deployments avoided."""

from collections import Counter

import pytest

from gateway.policy.compiled import Deployment
from gateway.routing.choice import choose_deployment, soonest_recovery, weighted_pick
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


def test_soonest_recovery_is_the_earliest_cooldown_end():
    def health_of(d: Deployment) -> Health:
        return Health(3, {A: 50.0, B: 20.0, C: 90.0}[d])

    assert soonest_recovery(ALL, health_of, 10.0) == 10.0
