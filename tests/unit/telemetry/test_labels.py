"""Metric labels: bounded by the policy, never a request id, subject or caller's typo."""

from __future__ import annotations

import pytest

from gateway.auth.principal import Principal
from gateway.context import Outcome, RequestContext
from gateway.policy.compiled import Deployment
from gateway.providers.base import UpstreamFailure
from gateway.routing.tries import Try
from gateway.telemetry import labels
from gateway.telemetry.names import AttemptResult, RefusalKind

A = Deployment("a", "model-a", 1.0, 1)
B = Deployment("b", "model-b", 1.0, 2)


def ctx_with(team: str | None = None, model: str | None = None) -> RequestContext:
    ctx = RequestContext(request_id="req_1", endpoint="chat", model=model)
    if team is not None:
        ctx.principal = Principal(team, "subject-1", None, frozenset(), "iss", 0.0)
    return ctx


@pytest.mark.parametrize(
    ("model", "label"), [("fast", "fast"), ("typo-of-fast", "_other"), (None, "_none")]
)
def test_model_label_is_a_policy_model_or_a_placeholder(model, label):
    assert labels.model_label(ctx_with(model=model), {"fast", "slow"}) == label


@pytest.mark.parametrize(
    ("team", "label"), [("demo", "demo"), ("made-up", "_other"), (None, "_none")]
)
def test_team_label_is_a_policy_team_or_a_placeholder(team, label):
    assert labels.team_label(ctx_with(team=team), {"demo"}) == label


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (429, "rate_limit_exceeded", RefusalKind.RATE_LIMIT),
        (429, "insufficient_quota", RefusalKind.BUDGET),
        (429, None, None),
        (429, "something_else", None),
        (400, "insufficient_quota", None),  # not a 429: not a usage control's refusal
        (200, None, None),
    ],
)
def test_refusal_kind_is_told_by_the_429_code(status, code, kind):
    ctx = ctx_with(team="demo")
    ctx.end(status, Outcome.REFUSED if status >= 400 else Outcome.OK, code)
    assert labels.refusal_kind(ctx) is kind


def test_attempts_and_failovers_of_a_request():
    tries = (
        Try(A, UpstreamFailure("x", status=503)),
        Try(A, UpstreamFailure("x", is_timeout=True)),
        Try(B, is_answer=True),
    )
    assert labels.attempt_results(tries) == [
        ("a/model-a", AttemptResult.SERVER_ERROR),
        ("a/model-a", AttemptResult.TIMEOUT),
        ("b/model-b", AttemptResult.OK),
    ]
    # A retried A (not a failover), then left it for B: one failover, from A.
    assert labels.failed_over_from(tries) == ["a/model-a"]


def test_retries_of_the_only_deployment_are_no_failover():
    """A model with one deployment, tried three times: it never moved anywhere."""
    tries = (
        Try(A, UpstreamFailure("x", status=503)),
        Try(A, UpstreamFailure("x", status=503)),
        Try(A, is_answer=True),
    )
    assert labels.failed_over_from(tries) == []


def test_the_last_failure_is_not_a_failover():
    """A request whose last attempt failed went nowhere else."""
    tries = (Try(A, UpstreamFailure("x", status=500)), Try(B, UpstreamFailure("y", status=500)))
    assert labels.failed_over_from(tries) == ["a/model-a"]
    assert labels.failed_over_from(()) == []
    assert labels.attempt_results((Try(A),)) == [("a/model-a", AttemptResult.CANCELLED)]


def test_deployment_label():
    ctx = ctx_with()
    assert labels.deployment_label(ctx) == "none"
    ctx.deployment = B
    assert labels.deployment_label(ctx) == "b/model-b"
