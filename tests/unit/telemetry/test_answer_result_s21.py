"""The answering attempt's result, from how its request ended (telemetry/attributes.py)."""

from __future__ import annotations

import pytest

from gateway.context import Outcome, RequestContext
from gateway.policy.compiled import Deployment
from gateway.providers.base import UpstreamFailure
from gateway.routing.tries import Try
from gateway.telemetry import labels
from gateway.telemetry.attributes import answer_result, upstream_refusal
from gateway.telemetry.names import AttemptResult
from gateway.usage.usage import Usage

A = Deployment("a", "model-a", 1.0, 1)
B = Deployment("b", "model-b", 1.0, 2)


def ended(status: int, outcome: Outcome, code: str | None = None, charged: bool = False):
    ctx = RequestContext(request_id="req_1", endpoint="chat")
    ctx.tries = (Try(A, UpstreamFailure("x", status=503)), Try(B, is_answer=True))
    ctx.end(status, outcome, code)
    ctx.usage = Usage(5, 7) if charged else None
    return ctx


@pytest.mark.parametrize(
    ("ctx", "result", "refused_with"),
    [
        (ended(200, Outcome.OK, charged=True), AttemptResult.OK, None),
        (ended(400, Outcome.REFUSED), AttemptResult.REFUSED, 400),  # the upstream's own
        (ended(422, Outcome.REFUSED, "bad_param"), AttemptResult.REFUSED, 422),
        # An output rule refused the answer: charged, the gateway's doing, the attempt ok.
        (ended(400, Outcome.REFUSED, "content_policy_violation", True), AttemptResult.OK, None),
        (ended(502, Outcome.UPSTREAM_ERROR, "upstream_unavailable", True),
         AttemptResult.CONNECT_ERROR, None),
        (ended(504, Outcome.UPSTREAM_ERROR, "upstream_timeout", True),
         AttemptResult.TIMEOUT, None),
        (ended(500, Outcome.GATEWAY_ERROR, "internal_error", True), AttemptResult.OK, None),
    ],
)  # fmt: skip
def test_the_answering_attempts_result(ctx, result, refused_with):
    assert answer_result(ctx) is result
    assert upstream_refusal(ctx) == refused_with
    assert labels.attempt_results(ctx.tries, answer_result(ctx)) == [
        ("a/model-a", AttemptResult.SERVER_ERROR),
        ("b/model-b", result),
    ]


def test_a_refusal_before_any_attempt_answered_is_no_upstream_refusal():
    ctx = ended(403, Outcome.REFUSED, "model_not_allowed")
    ctx.tries = ()
    assert upstream_refusal(ctx) is None
    ctx.tries = (Try(A, UpstreamFailure("x", status=404)),)  # failed over, none answered
    assert upstream_refusal(ctx) is None
