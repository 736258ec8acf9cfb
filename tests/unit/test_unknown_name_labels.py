"""Metric labels of names the policy does not hold (`_other`) or a request lacks (`_none`)
never equal a name the policy may hold, so a model or team named `other` or `none` keeps
series of its own."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from gateway.auth.principal import Principal
from gateway.context import RequestContext
from gateway.policy.schema import ModelName, TeamName
from gateway.telemetry import labels


def ctx_with(team: str | None = None, model: str | None = None) -> RequestContext:
    ctx = RequestContext(request_id="req_1", endpoint="chat", model=model)
    if team is not None:
        ctx.principal = Principal(team, "subject-1", None, frozenset(), "iss", 0.0)
    return ctx


@pytest.mark.parametrize("name", ["other", "none"])
def test_a_model_named_like_a_stand_in_is_not_the_unknown_bucket(name: str) -> None:
    """Before: a model `other` and a typo both counted as model="other"."""
    known = {name}
    named = labels.model_label(ctx_with(model=name), known)
    unknown = labels.model_label(ctx_with(model="typo-of-a-model"), known)
    missing = labels.model_label(ctx_with(), known)
    assert named == name
    assert len({named, unknown, missing}) == 3


@pytest.mark.parametrize("name", ["other", "none"])
def test_a_team_named_like_a_stand_in_is_not_the_unknown_bucket(name: str) -> None:
    known = {name}
    named = labels.team_label(ctx_with(team=name), known)
    unknown = labels.team_label(ctx_with(team="made-up-by-an-issuer"), known)
    missing = labels.team_label(ctx_with(), known)
    assert named == name
    assert len({named, unknown, missing}) == 3


def test_no_policy_name_can_be_a_stand_in() -> None:
    """The schema refuses the stand-ins as model and team names, so they stay unambiguous."""
    stand_ins = {
        ModelName: {
            labels.model_label(ctx_with(model="typo"), set()),
            labels.model_label(ctx_with(), set()),
        },
        TeamName: {
            labels.team_label(ctx_with(team="made-up"), set()),
            labels.team_label(ctx_with(), set()),
        },
    }
    for name_type, values in stand_ins.items():
        for value in values:
            with pytest.raises(ValidationError):
                TypeAdapter(name_type).validate_python(value)
