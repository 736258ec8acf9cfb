"""Names that must fit in a URL path, and secrets kept out of `api_base` (gateway/policy/schema.py)."""

from pathlib import Path

import pytest

from gateway.policy.errors import PolicyInvalid
from gateway.policy.loader import load_bundle

BUNDLE = """\
providers:
  demo: {type: mock}
  local: {type: openai-compatible, api_base: "API_BASE"}
models:
  meta-llama/Llama-3-70b: {deployments: [{provider: demo, model: m}]}
teams:
  TEAM: {models: [meta-llama/Llama-3-70b], guardrails: [PROFILE]}
guardrails:
  PROFILE: {input: [{detector: secrets, action: block}]}
"""
SECRET = "sk-live-ABC123"


def write(
    tmp_path: Path,
    *,
    team: str = "search",
    profile: str = "baseline",
    api_base: str = "http://vllm:8000/v1",
) -> Path:
    text = BUNDLE.replace("TEAM", team).replace("PROFILE", profile)
    (tmp_path / "bundle.yaml").write_text(text.replace("API_BASE", api_base))
    return tmp_path


def problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_bundle(directory)
    return [str(issue) for issue in caught.value.issues]


def test_model_aliases_keep_their_slash(tmp_path: Path) -> None:
    """`meta-llama/Llama-3-70b` is still a valid model alias, and a team may use it."""
    loaded = load_bundle(write(tmp_path))
    assert list(loaded.bundle.models) == ["meta-llama/Llama-3-70b"]
    assert loaded.bundle.teams["search"].models == ["meta-llama/Llama-3-70b"]


def test_a_team_named_with_a_slash_is_refused_at_its_line(tmp_path: Path) -> None:
    """The error names file:line and why: a team is one segment of /admin/teams/{team}."""
    found = problems(write(tmp_path, team="ml/research"))
    assert found == [
        f"{tmp_path}/bundle.yaml:7: teams.ml/research.[key]: Value error, a team name may "
        "not contain '/': it is one segment of /admin/teams/{team}; "
        "use letters, digits and . _ : @ -"
    ]


def test_a_guardrail_profile_named_with_a_slash_is_refused_at_its_line(tmp_path: Path) -> None:
    found = problems(write(tmp_path, profile="pii/strict"))
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path}/bundle.yaml:9: guardrails.pii/strict.[key]: ")
    assert "a guardrail profile name may not contain '/'" in found[0]


@pytest.mark.parametrize("team", ["ml.research", "ml_research", "ml:research", "ml@corp", "a-1"])
def test_team_names_without_a_slash_are_unchanged(tmp_path: Path, team: str) -> None:
    assert team in load_bundle(write(tmp_path, team=team)).bundle.teams


@pytest.mark.parametrize(
    "api_base",
    [
        f"https://svc:{SECRET}@vllm.internal/v1",
        f"https://{SECRET}@vllm.internal/v1",
        f"http://svc:{SECRET}@10.0.0.7:8000",
    ],
)
def test_credentials_in_api_base_are_refused_without_echoing_them(
    tmp_path: Path, api_base: str
) -> None:
    """Secrets only by reference: the error says to use api_key: ${VAR} and never repeats one."""
    found = problems(write(tmp_path, api_base=api_base))
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path}/bundle.yaml:3: providers.local.api_base: ")
    assert "must not hold credentials" in found[0]
    assert "api_key: ${ENV_VAR}" in found[0]
    assert SECRET not in found[0]


@pytest.mark.parametrize(
    "api_base",
    [
        "https://vllm.internal/v1",
        "http://[::1]:8000/v1",
        "https://vllm.internal/v1/@team",  # an "@" in the path is no credential
        "https://vllm.internal/${TENANT_TOKEN}/v1",  # a reference in the path is fine
    ],
)
def test_api_base_without_credentials_is_accepted(tmp_path: Path, api_base: str) -> None:
    assert load_bundle(write(tmp_path, api_base=api_base)).bundle.providers["local"].api_base == (
        api_base
    )


def test_api_base_with_a_query_is_still_refused(tmp_path: Path) -> None:
    found = problems(write(tmp_path, api_base="https://vllm.internal/v1?key=x"))
    assert found[0].endswith("api_base must be an http(s) URL without query or fragment")
