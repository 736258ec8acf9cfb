"""A classifier rule's own `url` obeys the upstream rules: prompts are posted there."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.errors import PolicyInvalid
from gateway.policy.store import load_policy_dir

BUNDLE = """\
guardrails:
  screen:
    input:
      - {{detector: classifier, url: "{url}", model: guard, action: block}}
"""


def problems(tmp_path: Path, url: str, env: dict[str, str]) -> list[str]:
    (tmp_path / "bundle.yaml").write_text(BUNDLE.format(url=url))
    try:
        load_policy_dir(tmp_path, env)
    except PolicyInvalid as invalid:
        return [str(issue).replace(f"{tmp_path}/", "") for issue in invalid.issues]
    return []


@pytest.mark.parametrize(
    ("url", "env"),
    [
        ("http://169.254.169.254/latest/meta-data/", {}),
        ("http://169\u3002254\u3002169\u3002254/v1/moderations", {}),
        ("http://127.0.0.1:8080/v1/moderations", {"GATEWAY_PORT": "8080"}),  # the gateway itself
        ("https://mod.example.com/v1/moderations", {"GATEWAY_UPSTREAM_ALLOW": "api.openai.com"}),
    ],
)
def test_a_classifier_url_the_upstream_rules_refuse_is_an_error_at_its_line(
    tmp_path: Path, url: str, env: dict[str, str]
) -> None:
    (found,) = problems(tmp_path, url, env)
    assert found.startswith("bundle.yaml:4: guardrails.screen.input[0].url: ")


def test_an_ordinary_classifier_url_is_accepted(tmp_path: Path) -> None:
    assert problems(tmp_path, "http://127.0.0.1:9000/v1/moderations", {}) == []
