"""A provider a new policy version replaces (its key rotated, its api_base moved, it
removed) stays open until every request begun under the old version has ended: past
the longest `timeout_s` of that version, never less than the fixed grace (probe p17:
a 400 s stream was cut at 120 s, hung without a byte, then ended 504)."""

from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.compiled import ModelRoute, Policy, RoutingConfig
from gateway.policy.sync import RETIRE_GRACE_S, RETIRE_MARGIN_S, retire_after_s


def policy(*timeouts: float) -> Policy:
    models = {
        f"m{n}": ModelRoute(f"m{n}", (), RoutingConfig(timeout_s=timeout), None)
        for n, timeout in enumerate(timeouts)
    }
    return Policy(providers={}, models=models, teams={}, hash="h")


def test_a_long_deadline_keeps_the_old_providers_past_it():
    assert retire_after_s(policy(60, 400)) == 400 + RETIRE_MARGIN_S


def test_short_deadlines_and_no_models_keep_the_fixed_grace():
    assert retire_after_s(policy(10, 30)) == RETIRE_GRACE_S
    assert retire_after_s(policy()) == RETIRE_GRACE_S


@given(st.lists(st.floats(min_value=0.1, max_value=1e6), max_size=5))
def test_every_request_of_the_old_version_ends_before_its_providers_close(timeouts):
    after = retire_after_s(policy(*timeouts))
    assert after >= RETIRE_GRACE_S
    assert all(after >= timeout + RETIRE_MARGIN_S for timeout in timeouts)
