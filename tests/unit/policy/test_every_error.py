"""One check lists every error: schema errors do not hide reference or secret errors
(gateway/policy/partial.py; SPEC §1 `policy check`, §5 `PUT /admin/policy`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.policy.candidate import candidate_from_folder, candidate_from_raw
from gateway.policy.errors import PolicyInvalid

BUNDLE = """\
providers:
  demo: {type: mock}
  leak: {type: openai-compatible, api_base: "http://x.example/v1", api_key: "${GATEWAY_DB}"}
  broken: {type: openai-compatible, api_base: "ftp://nowhere"}
models:
  good: {deployments: [{provider: demo, model: m}]}
  bad: {deployments: [{provider: demo, model: m, weight: -1}]}
  via-broken: {deployments: [{provider: broken, model: m}]}
teams:
  a: {models: [good, ghost], budgets: [{period: month, usd: 0}], limits: {rpm: yes}}
  b: {models: [good, bad, phantom], guardrails: [nope]}
auth:
  issuers:
    - {issuer: "https://idp.example.com", audience: x, team_map: {g: a, h: nobody}}
"""


def issues_of(tmp_path: Path) -> list[str]:
    (tmp_path / "bundle.yaml").write_text(BUNDLE)
    with pytest.raises(PolicyInvalid) as caught:
        candidate_from_folder(tmp_path, {"GATEWAY_DB": "secret"})
    return [str(i).replace(f"{tmp_path}/", "") for i in caught.value.issues]


def test_schema_reference_and_secret_errors_are_listed_in_one_run(tmp_path: Path) -> None:
    found = issues_of(tmp_path)
    fields = sorted(issue.split(": ")[1] for issue in found)
    assert fields == [
        "auth.issuers[0].team_map.h",  # unknown team
        "models.bad.deployments[0].weight",  # schema
        "providers.broken.api_base",  # schema
        "providers.leak.api_key",  # a GATEWAY_* setting: refused
        "teams.a.budgets[0].usd",  # schema
        "teams.a.limits.rpm",  # schema, the same team: it is set aside once
        "teams.a.models[1]",  # unknown model ghost, in the team the schema refused
        "teams.b.guardrails[0]",  # unknown profile
        "teams.b.models[2]",  # unknown model: phantom
    ], found
    assert all("secret" not in issue for issue in found)


def test_what_the_schema_refused_is_not_reported_again_as_unknown(tmp_path: Path) -> None:
    """Team b names model `bad`, the issuer maps to team `a`, `via-broken` uses `broken`:
    each exists, only its schema is wrong, so none is "unknown"."""
    joined = "\n".join(issues_of(tmp_path))
    assert "'bad'" not in joined and "'a'" not in joined and "'broken'" not in joined


def test_the_admin_api_path_lists_them_too() -> None:
    raw = yaml.safe_load(BUNDLE)
    with pytest.raises(PolicyInvalid) as caught:
        candidate_from_raw(raw, {"GATEWAY_DB": "secret"})
    fields = {issue.field for issue in caught.value.issues}
    assert {"teams.b.models[2]", "providers.leak.api_key", "teams.a.budgets[0].usd"} <= fields
