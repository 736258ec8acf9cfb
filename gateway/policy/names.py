"""The policy's team-name rule as a plain check, for edges that take a team name outside
a bundle (`gateway token`, `gateway clients create`, POST /admin/clients): a name the
schema would refuse can never be a team, so a token or client for it could never work."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from gateway.policy.schema import TeamName

_TEAM_NAME: TypeAdapter[str] = TypeAdapter(TeamName)


def team_name_problem(name: str) -> str | None:
    """Why no policy can have a team named `name`; None when one can."""
    try:
        _TEAM_NAME.validate_python(name)
    except ValidationError as invalid:
        error = invalid.errors(include_url=False)[0]
        if error["type"] == "value_error":  # the schema's own words (a "/")
            return str(error["ctx"]["error"])
        return (
            "a team name starts with a letter or digit and holds only letters, digits and . _ : @ -"
        )
    return None
