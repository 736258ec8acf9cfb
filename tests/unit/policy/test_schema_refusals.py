"""Values `policy check` once accepted that then misbehaved at run time, each now refused
at its file:line (gateway/policy/schema.py): a timezone that is a tz-folder file but no
IANA zone, a USD budget under one nano-dollar, an issuer audience naming nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.policy.compiled import Policy, user_budgets
from gateway.policy.errors import PolicyInvalid
from gateway.policy.schema import BudgetSpec, IssuerSpec
from gateway.policy.store import load_policy_dir
from gateway.usage.nano import usd_to_nano

BUNDLE = """\
providers:
  demo: {{type: mock}}
models:
  m: {{deployments: [{{provider: demo, model: m}}]}}
teams:
  search:
    models: ["*"]
    budgets: [{team_budget}]
    per_user: {{budgets: [{user_budget}]}}
auth:
  issuers:
    - issuer: "https://idp.example.com/"
      audience: {audience}
timezone: {timezone}
"""
# The line of each field above, as `policy check` names it.
LINE = {"team_budget": 8, "user_budget": 9, "audience": 13, "timezone": 14}


def load(
    tmp_path: Path,
    *,
    team_budget: str = "{period: day, usd: 10}",
    user_budget: str = "{period: day, usd: 1}",
    audience: str = "llm-gateway",
    timezone: str = "UTC",
) -> Policy:
    text = BUNDLE.format(
        team_budget=team_budget, user_budget=user_budget, audience=audience, timezone=timezone
    )
    (tmp_path / "bundle.yaml").write_text(text)
    return load_policy_dir(tmp_path, {})


def problem(tmp_path: Path, **fields: str) -> str:
    with pytest.raises(PolicyInvalid) as caught:
        load(tmp_path, **fields)
    (issue,) = caught.value.issues
    return str(issue)


@pytest.mark.parametrize(
    "timezone",
    [
        "localtime",  # each replica's own /etc/localtime
        "posixrules",
        "Factory",
        "../../etc/localtime",
        "/etc/localtime",
        "posix/Europe/Berlin",
        "right/UTC",
        "Europe/../UTC",
        "utc",
        "Mars/Olympus",
    ],
)
def test_a_timezone_that_is_no_iana_zone_is_refused_at_its_line(
    tmp_path: Path, timezone: str
) -> None:
    """`timezone: localtime` followed each replica's own clock setting: refused, by name."""
    assert problem(tmp_path, timezone=f'"{timezone}"') == (
        f"{tmp_path}/bundle.yaml:{LINE['timezone']}: timezone: Value error, "
        f"unknown timezone {timezone!r}"
    )


@pytest.mark.parametrize(
    "timezone", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"]
)
def test_iana_timezones_are_kept(tmp_path: Path, timezone: str) -> None:
    assert load(tmp_path, timezone=timezone).timezone == timezone


@pytest.mark.parametrize("usd", ["0.0000000001", "0.0000000009999", "0.00000000000000000001"])
@pytest.mark.parametrize("where", ["team_budget", "user_budget"])
def test_a_usd_budget_under_one_nano_dollar_is_refused_at_its_line(
    tmp_path: Path, usd: str, where: str
) -> None:
    """It rounded to a 0 USD budget that refused every request with 429."""
    found = problem(tmp_path, **{where: f"{{period: day, usd: {usd}}}"})
    assert found.startswith(f"{tmp_path}/bundle.yaml:{LINE[where]}: ")
    assert ".budgets[0].usd: Value error, " in found
    assert "the smallest USD budget is 0.000000001" in found


@pytest.mark.parametrize("where", ["team_budget", "user_budget"])
def test_the_smallest_usd_budget_is_one_nano_dollar(tmp_path: Path, where: str) -> None:
    team = load(tmp_path, **{where: "{period: day, usd: 0.000000001}"}).teams["search"]
    budget = (team.budgets if where == "team_budget" else user_budgets(team.per_user))[0]
    assert budget.usd == 1e-9


@given(st.floats(min_value=0, max_value=1e-6, exclude_min=True))
def test_a_usd_budget_is_valid_exactly_when_the_ledger_counts_it(usd: float) -> None:
    """The check and the limits' nano-USD conversion agree on every amount."""
    try:
        BudgetSpec(period="day", usd=usd)
    except ValidationError:
        assert usd_to_nano(usd) == 0
    else:
        assert usd_to_nano(usd) >= 1


@pytest.mark.parametrize("audience", ['""', '"  "', "[]", '[""]', '[llm-gateway, ""]'])
def test_an_audience_naming_nothing_is_refused_at_its_line(tmp_path: Path, audience: str) -> None:
    """`""` let tokens with `"aud": ""` in; `[]` refused every token of the issuer, silently."""
    found = problem(tmp_path, audience=audience)
    assert found.startswith(
        f"{tmp_path}/bundle.yaml:{LINE['audience']}: auth.issuers[0].audience: Value error, "
    )


@pytest.mark.parametrize("audience", ["llm-gateway", "[llm-gateway, api://gw]"])
def test_an_audience_or_a_list_of_them_is_kept(tmp_path: Path, audience: str) -> None:
    (issuer,) = load(tmp_path, audience=audience).issuers
    assert issuer.audience in ("llm-gateway", ["llm-gateway", "api://gw"])


@pytest.mark.parametrize("field", ["team_claim", "subject_claim", "scope_claim", "client_id_claim"])
@pytest.mark.parametrize("name", ["", "  "])
def test_a_claim_name_naming_nothing_is_refused(field: str, name: str) -> None:
    """Probe p15: `team_claim: ""` passed the check, then every token of the issuer got
    a 401."""
    spec = {"issuer": "https://idp.example", "audience": "gw", field: name}
    with pytest.raises(ValidationError, match=field):
        IssuerSpec(**spec)  # type: ignore[arg-type]
    IssuerSpec(**{**spec, field: "realm_access.roles"})  # type: ignore[arg-type]
