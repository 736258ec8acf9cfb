"""References made by entries the schema refused are checked in the same run
(gateway/policy/aside_references.py, through partial.py; SPEC §1 `policy check`, §5 PUT)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.policy.aside_references import aside_reference_issues
from gateway.policy.candidate import candidate_from_folder, candidate_from_raw
from gateway.policy.compiled import SetAside
from gateway.policy.errors import PolicyInvalid

# The black-box probe: one team with three schema errors, an unknown model and an
# unknown guardrail profile.
PROBE = """\
providers:
  demo: {type: mock}
models:
  good:
    deployments: [{provider: demo, model: m}]
teams:
  search:
    models: [good, ghost]
    budgets:
      - {period: fortnight, tokens: 100}
    limits: {rpm: "many"}
    guardrails: [nope]
"""


def folder_issues(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "teams.yaml").write_text(text)
    with pytest.raises(PolicyInvalid) as caught:
        candidate_from_folder(tmp_path, {})
    return [str(i).replace(f"{tmp_path}/", "") for i in caught.value.issues]


def raw_issues(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        candidate_from_raw(raw, {})
    return [str(i) for i in caught.value.issues]


def test_schema_and_reference_errors_of_one_team_come_in_one_run(tmp_path: Path) -> None:
    """The probe's bundle lists all five errors at once, each with file, line and field."""
    assert folder_issues(tmp_path, PROBE) == [
        "teams.yaml:10: teams.search.budgets[0].period: Input should be 'day', 'week' or 'month'",
        "teams.yaml:11: teams.search.limits.rpm: Input should be a valid integer",
        "teams.yaml:8: teams.search.models[1]: unknown model 'ghost'",
        "teams.yaml:12: teams.search.guardrails[0]: "
        "unknown guardrail profile 'nope' (not in guardrails)",
    ]


def test_the_admin_api_path_lists_them_in_one_run_too() -> None:
    fields = [issue.split(": ")[1] for issue in raw_issues(yaml.safe_load(PROBE))]
    assert fields == [
        "teams.search.budgets[0].period",
        "teams.search.limits.rpm",
        "teams.search.models[1]",
        "teams.search.guardrails[0]",
    ]


VALID: dict[str, Any] = {
    "providers": {"demo": {"type": "mock"}, "mod": {"type": "openai", "api_base": "https://m.x"}},
    "models": {"good": {"deployments": [{"provider": "demo", "model": "m"}]}},
    "teams": {"search": {"models": ["good"]}},
    "guardrails": {"base": {"input": [{"detector": "secrets", "action": "block"}]}},
    "auth": {"issuers": [{"issuer": "https://idp.example.com", "audience": "x", "team_map": {}}]},
}

# (a reference gone wrong, a schema error in the same entry): each edit takes the bundle.
REFERENCES = {
    "team model": (
        lambda b: b["teams"]["search"]["models"].append("ghost"),
        lambda b: b["teams"]["search"].update(limits={"rpm": "many"}),
    ),
    "team profile": (
        lambda b: b["teams"]["search"].update(guardrails=["nope"]),
        lambda b: b["teams"]["search"].update(budgets=[{"period": "fortnight", "usd": 1}]),
    ),
    "deployment provider": (
        lambda b: b["models"]["good"]["deployments"].append({"provider": "gone", "model": "m"}),
        lambda b: b["models"]["good"]["deployments"][0].update(weight=-1),
    ),
    "classifier provider": (
        lambda b: b["guardrails"]["base"]["input"].append(
            {"detector": "classifier", "provider": "gone", "model": "x", "action": "block"}
        ),
        lambda b: b["guardrails"]["base"].update(max_input_tokens="lots"),
    ),
    "classifier provider without api_base": (
        lambda b: b["guardrails"]["base"]["input"].append(
            {"detector": "classifier", "provider": "demo", "model": "x", "action": "block"}
        ),
        lambda b: b["guardrails"]["base"].update(max_input_tokens="lots"),
    ),
    "issuer team_map": (
        lambda b: b["auth"]["issuers"][0]["team_map"].update(g="nobody"),
        lambda b: b["auth"]["issuers"][0].update(jwks_uri=5),
    ),
}


@pytest.mark.parametrize("kind", REFERENCES)
def test_a_refused_entry_reports_its_reference_as_a_valid_one_would(kind: str) -> None:
    """The same error, word for word, whether or not its entry also breaks the schema."""
    break_reference, break_schema = REFERENCES[kind]
    alone = copy.deepcopy(VALID)
    break_reference(alone)
    [expected] = raw_issues(alone)
    both = copy.deepcopy(alone)
    break_schema(both)
    found = raw_issues(both)
    assert len(found) == 2 and found.count(expected) == 1, found


def test_a_reference_to_a_refused_definition_is_not_unknown() -> None:
    """Model `bad`, profile `loose`, provider `odd` and team `broken` are written, only
    malformed: no reference to them is reported, from a valid entry or a refused one."""
    raw = copy.deepcopy(VALID)
    raw["providers"]["odd"] = {"type": "carrier-pigeon"}
    raw["models"]["bad"] = {"deployments": [{"provider": "odd", "model": "m", "weight": -1}]}
    raw["guardrails"]["loose"] = {"input": "all of it"}
    raw["teams"]["search"]["models"] += ["bad"]
    raw["teams"]["search"]["guardrails"] = ["loose"]
    raw["teams"]["broken"] = {"models": ["bad", "good"], "guardrails": ["loose"], "rpm": 1}
    raw["auth"]["issuers"][0]["team_map"] = {"g": "broken"}
    found = raw_issues(raw)
    assert [issue.split(": ")[1] for issue in found] == [
        "providers.odd.type",
        "models.bad.deployments[0].weight",
        "teams.broken.rpm",
        "guardrails.loose.input",
    ], found


def test_each_error_is_reported_once() -> None:
    """A refused team is checked here, a kept one by compiling: never both."""
    raw = copy.deepcopy(VALID)
    raw["teams"]["kept"] = {"models": ["ghost"]}
    raw["teams"]["refused"] = {"models": ["ghost", "phantom"], "limits": {"rpm": "x"}}
    fields = [issue.split(": ")[1] for issue in raw_issues(raw)]
    assert sorted(fields) == [
        "teams.kept.models[0]",
        "teams.refused.limits.rpm",
        "teams.refused.models[0]",
        "teams.refused.models[1]",
    ]


def where(path: object) -> str:
    return "bundle"


def checked(raw: dict[str, Any], aside: SetAside) -> list[str]:
    return [str(issue) for issue in aside_reference_issues(raw, aside, where)]


TEAMS_ASIDE = SetAside({"teams": frozenset({"t"})})


@pytest.mark.parametrize(
    ("team", "expected"),
    [
        ({"models": ["good", "ghost"]}, ["bundle: teams.t.models[1]: unknown model 'ghost'"]),
        ({"models": ["*", 3, None, ["ghost"]]}, []),  # the schema names what is not a string
        ({"models": "ghost"}, []),  # not a list: the schema's to name
        ({"models": {"ghost": 1}}, []),
        (
            {"guardrails": [7, "nope"]},
            ["bundle: teams.t.guardrails[1]: unknown guardrail profile 'nope' (not in guardrails)"],
        ),
        ("not a mapping", []),
        (None, []),
    ],
)
def test_a_refused_team_is_checked_where_it_has_the_expected_shape(
    team: Any, expected: list[str]
) -> None:
    raw = {"models": {"good": {}}, "teams": {"t": team}}
    assert checked(raw, TEAMS_ASIDE) == expected


def test_only_entries_set_aside_are_checked() -> None:
    """Kept entries are compiling's to check: reporting them here would list them twice."""
    raw = {"teams": {"t": {"models": ["ghost"]}, "kept": {"models": ["ghost"]}}}
    assert checked(raw, TEAMS_ASIDE) == ["bundle: teams.t.models[0]: unknown model 'ghost'"]


def test_a_section_set_aside_whole_defines_every_name_and_has_each_entry_checked() -> None:
    raw = {
        "models": ["not", "a", "mapping"],
        "teams": {"a": {"models": ["x"], "guardrails": ["p"]}, "b": {"models": ["y"]}},
    }
    assert checked(raw, SetAside(sections=frozenset({"models", "teams"}))) == [
        "bundle: teams.a.guardrails[0]: unknown guardrail profile 'p' (not in guardrails)"
    ]


def test_a_missing_section_defines_nothing() -> None:
    raw = {"models": {"m": {"deployments": [{"provider": "p", "model": "x"}, "junk"]}}}
    assert checked(raw, SetAside({"models": frozenset({"m"})})) == [
        "bundle: models.m.deployments[0].provider: unknown provider 'p' (not in providers)"
    ]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"detector": "classifier", "provider": "gone"}, "unknown provider 'gone'"),
        ({"detector": "classifier", "provider": "plain"}, "has no api_base to classify with"),
        ({"detector": "classifier", "provider": "refused"}, None),  # its api_base: unjudged
        ({"detector": "classifier", "provider": "base"}, None),
        ({"detector": "secrets", "provider": "gone"}, None),  # a schema error already
        ({"detector": "classifier", "provider": 5}, None),
    ],
)
def test_a_refused_profiles_classifier_provider(rule: dict[str, Any], expected: str | None) -> None:
    raw = {
        "providers": {
            "plain": {"type": "mock"},
            "refused": {"type": "x"},
            "base": {"type": "openai", "api_base": "https://x"},
        },
        "guardrails": {"g": {"input": [rule]}},
    }
    aside = SetAside({"guardrails": frozenset({"g"}), "providers": frozenset({"refused"})})
    found = checked(raw, aside)
    if expected is None:
        assert found == []
    else:
        [issue] = found
        assert issue.startswith("bundle: guardrails.g.input[0].provider: ") and expected in issue


def test_auth_set_aside_has_its_team_maps_checked() -> None:
    raw = {
        "teams": {"a": {}},
        "auth": {"issuers": [{"team_map": {"x": "a", "y": "nobody", "z": 3}}, "junk"]},
    }
    assert checked(raw, SetAside(sections=frozenset({"auth"}))) == [
        "bundle: auth.issuers[0].team_map.y: unknown team 'nobody'"
    ]
    assert checked(raw, SetAside()) == []  # auth kept: compiling checks it
