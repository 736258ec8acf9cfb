"""Metric label values from a finished request: bounded by the policy, never a secret.

Pure functions. A model or team the policy does not name (a caller's typo, a claim
an external issuer made up) becomes `_other`, and a request without one (no token,
no model) `_none`, so no caller can grow the label set; a request id, subject or
token is never a label.
"""

from __future__ import annotations

from collections.abc import Container
from itertools import pairwise

from gateway.context import RequestContext
from gateway.routing.tries import Try
from gateway.telemetry import names
from gateway.telemetry.attributes import attempt_result
from gateway.telemetry.names import REFUSAL_CODES, AttemptResult, RefusalKind

# The stand-ins start with "_", as no model or team name may (policy/schema.py: a letter
# or digit first), so a model or team the policy names `other` or `none` keeps series of
# its own instead of sharing the unknown names' ones.
UNKNOWN_NAME = "_other"
NO_NAME = "_none"


def model_label(ctx: RequestContext, known_models: Container[str]) -> str:
    if ctx.model is None:
        return NO_NAME
    return ctx.model if ctx.model in known_models else UNKNOWN_NAME


def team_label(ctx: RequestContext, known_teams: Container[str]) -> str:
    if ctx.principal is None:
        return NO_NAME
    team = ctx.principal.team
    return team if team in known_teams else UNKNOWN_NAME


def deployment_label(ctx: RequestContext) -> str:
    return ctx.deployment.label if ctx.deployment is not None else names.NONE


def refusal_kind(ctx: RequestContext) -> RefusalKind | None:
    """Which usage control refused the request, told by its 429's error code."""
    if ctx.status != 429 or ctx.error_code is None:
        return None
    return REFUSAL_CODES.get(ctx.error_code)


def attempt_results(
    tries: tuple[Try, ...], answered: AttemptResult = AttemptResult.OK
) -> list[tuple[str, AttemptResult]]:
    """(deployment label, result) for every attempt, in order; the answering one's is
    `answered` (attributes.answer_result: a relayed 4xx, a stream that broke)."""
    return [
        (t.deployment.label, answered if t.is_answer else attempt_result(t.failure, False))
        for t in tries
    ]


def failed_over_from(tries: tuple[Try, ...]) -> list[str]:
    """The deployments a request left for another after they failed: a failed attempt
    followed by one on a different deployment (a retry of the same one is no failover)."""
    return [
        t.deployment.label
        for t, then in pairwise(tries)
        if t.failure is not None and then.deployment.label != t.deployment.label
    ]
