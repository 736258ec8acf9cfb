"""Where a `${VAR}` may stand: secret fields and the path of api_base, nowhere else."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.errors import PolicyInvalid
from gateway.policy.secrets import (
    ENV_REFERENCE_FIELDS,
    ReferenceRules,
    read_escapes_beyond_providers,
    references_beyond_providers,
    resolve_references,
)
from gateway.policy.store import load_policy_dir

KEY = "sk-fake-0123456789"
ENV = {"FAKE_API_KEY": KEY}


@pytest.mark.parametrize("field", ["api_version", "region", "type", "model", "url"])
@pytest.mark.parametrize("value", ["${FAKE_API_KEY}", "2024-10-21${FAKE_API_KEY}", "${HOME}"])
def test_a_reference_outside_a_secret_field_is_refused_and_never_resolved(
    field: str, value: str
) -> None:
    """azure `api_version: ${FAKE_API_KEY}` would send the key in the URL's query string."""
    resolved, problems = resolve_references(value, field, ENV, ReferenceRules())
    assert KEY not in resolved
    (problem,) = problems
    assert "a reference stands only in a secret field" in problem
    assert "path of api_base" in problem
    assert KEY not in problem


@pytest.mark.parametrize("field", ["api_version", "api_base", "api_key", "model"])
def test_an_escaped_reference_is_the_literal_text_in_any_field(field: str) -> None:
    """`$${NAME}` is `${NAME}`, never resolved nor refused, as outside the providers."""
    written = "v1/$${FAKE_API_KEY}/$${file:/etc/passwd}"
    literal = "v1/${FAKE_API_KEY}/${file:/etc/passwd}"
    assert resolve_references(written, field, ENV, ReferenceRules()) == (literal, [])


def test_an_escaped_reference_beyond_the_providers_is_no_error() -> None:
    raw = {"teams": {"t": {"clients": ["$${HOME}", "a$${X}b"]}}, "routing": {"x": "${HOME}"}}
    found = list(references_beyond_providers(raw))
    assert [path for path, _ in found] == [("routing", "x")]
    assert "$${HOME}" in found[0][1]  # the way to write it
    assert read_escapes_beyond_providers(raw)["teams"]["t"]["clients"] == ["${HOME}", "a${X}b"]


@pytest.mark.parametrize("field", sorted(ENV_REFERENCE_FIELDS))
def test_secret_fields_and_api_base_resolve(field: str) -> None:
    assert resolve_references("${FAKE_API_KEY}", field, ENV, ReferenceRules()) == (KEY, [])


def test_the_env_reference_fields_are_the_secret_fields_and_api_base() -> None:
    assert {
        "api_key",
        "aws_access_key_id",
        "aws_secret_access_key",
        "api_base",
    } == ENV_REFERENCE_FIELDS


def test_a_misplaced_reference_is_refused_before_its_name_is_judged() -> None:
    """A GATEWAY_* name in api_version gets the field's refusal, not a lookup."""
    _, problems = resolve_references(
        "${GATEWAY_DATABASE_URL}", "api_version", {"GATEWAY_DATABASE_URL": "x"}, ReferenceRules()
    )
    assert len(problems) == 1 and "refused here" in problems[0]


def test_a_literal_dollar_is_not_a_reference() -> None:
    assert resolve_references("v$1", "api_version", ENV, ReferenceRules()) == ("v$1", [])


def test_the_error_names_file_line_and_field(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(
        "providers:\n"
        "  az:\n"
        "    type: azure\n"
        "    api_base: https://example.openai.azure.com\n"
        "    api_key: ${FAKE_API_KEY}\n"
        '    api_version: "${FAKE_API_KEY}"\n'
        "  bed: {type: bedrock, region: '${FAKE_API_KEY}'}\n"
    )
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_dir(folder, ENV)
    found = [str(issue) for issue in caught.value.issues]
    assert [f.split(": ${")[0] for f in found] == [
        f"{folder}/bundle.yaml:6: providers.az.api_version",
        f"{folder}/bundle.yaml:7: providers.bed.region",
    ]
    assert not any(KEY in f for f in found)


BEYOND_PROVIDERS = """\
providers:
  demo: {type: mock}
models:
  m:
    deployments:
      - {provider: demo, model: "${FAKE_API_KEY}"}
auth:
  issuers:
    - {issuer: "https://idp.example.com/", audience: "${FAKE_API_KEY}", team_claim: team}
teams:
  demo: {models: ["*"], clients: ["${FAKE_API_KEY}"], guardrails: [g]}
guardrails:
  g:
    input:
      - {pattern: "x${file:/run/secrets/k}", name: p, action: flag}
      - {detector: keywords, name: kw, keywords: ["${FAKE_API_KEY}"], action: flag}
      - {pattern: "costs \\\\$[0-9]+ or ${ notes} or $HOME", name: plain, action: flag}
"""


def test_a_reference_beyond_the_providers_is_an_error_at_its_file_line_and_field(
    tmp_path: Path,
) -> None:
    """It would be used as the literal text `${NAME}`; plain text with a `$` is fine."""
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(BEYOND_PROVIDERS)
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_dir(folder, ENV)
    found = {str(issue).split(": $")[0] for issue in caught.value.issues}
    assert found == {
        f"{folder}/bundle.yaml:6: models.m.deployments[0].model",
        f"{folder}/bundle.yaml:9: auth.issuers[0].audience",
        f"{folder}/bundle.yaml:11: teams.demo.clients[0]",
        f"{folder}/bundle.yaml:15: guardrails.g.input[0].pattern",
        f"{folder}/bundle.yaml:16: guardrails.g.input[1].keywords[0]",
    }
    assert all("is not resolved here" in str(i) for i in caught.value.issues)
    assert not any(KEY in str(issue) for issue in caught.value.issues)
