"""Guardrail profiles at `policy check`: each mistake refused with file:line, and compiled."""

from pathlib import Path

import pytest

from gateway.guardrails.kinds import GuardAction
from gateway.policy.errors import PolicyInvalid
from gateway.policy.store import load_policy_dir

BUNDLE = """\
providers:
  demo: {{type: mock}}
models:
  m: {{deployments: [{{provider: demo, model: m}}]}}
teams:
  t: {{models: ["*"], guardrails: [p, q]}}
guardrails:
  p:
    input:
      - {rule}
  q:
    output:
      - {{detector: email, action: redact}}
"""


def problems(tmp_path: Path, rule: str) -> list[str]:
    (tmp_path / "bundle.yaml").write_text(BUNDLE.format(rule=rule))
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_dir(tmp_path, {})
    return [str(i) for i in caught.value.issues]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('{pattern: "(unclosed", name: x, action: block}', "not a valid regular expression"),
        ('{pattern: "(?<=a)b", name: x, action: block}', "not supported (look-around"),
        (
            '{pattern: "((a{100}){100}){100}", name: x, action: block}',
            "a counted repetition is too large",
        ),
        ('{pattern: "a++", name: x, action: block}', "possessive quantifiers"),
        ('{pattern: "a*", name: x, action: block}', "matches the empty string"),
        ('{pattern: "abc", action: block}', "a pattern rule needs a name"),
        ("{keywords: [], name: k, action: block}", "keywords"),
        ("{detector: pattern, action: block}", "detector pattern needs its pattern field"),
        ("{detector: nonsense, action: block}", "detector"),
        ("{detector: email, action: shout}", "action"),
        ("{detector: email, action: redact, model: x}", "detector: classifier only"),
        ("{detector: classifier, model: g, action: block}", "exactly one of provider or url"),
        ('{detector: classifier, url: "http://c/v1/moderations", action: block}', "needs a model"),
        ('{detector: classifier, url: "http://c", model: g, action: redact}', "block or flag"),
        (
            "{detector: classifier, provider: ghost, model: g, action: block}",
            "unknown provider 'ghost'",
        ),
        ("{detector: max_input_tokens, action: block}", "profile field"),
        ("{detector: email, action: redact, name: a/b}", "may not contain '/'"),
    ],
)
def test_a_bad_rule_is_refused_at_its_file_and_line(tmp_path, rule, message):
    (found,) = problems(tmp_path, rule)
    assert found.startswith(f"{tmp_path}/bundle.yaml:10: guardrails.p.input[0]"), found
    assert message in found


def test_a_rule_listed_under_input_that_says_output_is_refused(tmp_path):
    (found,) = problems(tmp_path, "{detector: email, action: redact, where: [output]}")
    assert found.startswith(f"{tmp_path}/bundle.yaml:8: guardrails.p: ")
    assert "list it under rules" in found


def test_two_rules_with_one_name_on_a_side_are_refused(tmp_path):
    text = BUNDLE.format(
        rule="{detector: email, action: redact}\n      - {detector: email, action: block}"
    )
    (tmp_path / "bundle.yaml").write_text(text)
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_dir(tmp_path, {})
    assert "email used twice on input" in str(caught.value)


def test_a_teams_profiles_compile_into_one_scan_per_side(tmp_path):
    """Two profiles: the team's guards hold both sides, each one combined scanner."""
    (tmp_path / "bundle.yaml").write_text(
        BUNDLE.format(rule='{keywords: ["Project X"], name: codename, action: block}')
    )
    policy = load_policy_dir(tmp_path, {})
    guards = policy.teams["t"].guards
    assert guards.profiles == ("p", "q")
    assert [r.name for r in guards.input.rules] == ["codename"]
    assert [(r.name, r.action) for r in guards.output.rules] == [("email", GuardAction.REDACT)]
    assert guards.checks_input and guards.checks_output
