"""Policy bundles: every error names file, line and field; secrets resolve at load."""

from pathlib import Path

import pytest

from gateway.policy.errors import PolicyInvalid
from gateway.policy.store import load_policy_dir

REPO_POLICIES = Path(__file__).parents[3] / "policies"
EXAMPLE = Path(__file__).parents[3] / "gateway" / "policy" / "example"

GOOD = """\
providers:
  openai-main: {type: openai, api_key: "${OPENAI_KEY}"}
  local: {type: openai-compatible, api_base: "http://vllm:8000/v1"}
models:
  gpt-4o:
    deployments:
      - {provider: openai-main, model: gpt-4o-2024-08-06, weight: 3}
      - {provider: local, model: llama, priority: 2}
    routing: {retries: 5}
routing: {timeout_s: 30}
teams:
  search: {models: [gpt-4o]}
  all: {models: ["*"]}
"""


def bundle(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def issues(directory: Path, env=None) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_dir(directory, env or {})
    return [str(issue) for issue in caught.value.issues]


def test_a_good_bundle_compiles_with_secrets_resolved_and_routing_merged(tmp_path):
    policy = load_policy_dir(bundle(tmp_path, **{"a.yaml": GOOD}), {"OPENAI_KEY": "sk-secret"})
    assert policy.providers["openai-main"].api_key == "sk-secret"
    assert "sk-secret" not in repr(policy.providers["openai-main"])
    route = policy.models["gpt-4o"]
    assert route.routing.retries == 5
    assert route.routing.timeout_s == 30
    assert route.routing.cooldown_s == 30
    assert [d.label for d in route.deployments] == ["openai-main/gpt-4o-2024-08-06", "local/llama"]
    assert policy.teams["all"].allows("anything")
    assert not policy.teams["search"].allows("other")


def test_sections_may_be_split_across_files(tmp_path):
    head, _, teams = GOOD.partition("teams:")
    directory = bundle(tmp_path, **{"a.yaml": head, "b.yml": "teams:" + teams})
    assert set(load_policy_dir(directory, {"OPENAI_KEY": "k"}).teams) == {"search", "all"}


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    found = issues(bundle(tmp_path, **{"p.yaml": "providers:\n  a: {type: mock\nmodels: {}\n"}))
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path}/p.yaml:3: YAML syntax error")


def test_unknown_key_names_file_line_and_field(tmp_path):
    text = GOOD.replace("weight: 3}", "weight: 3, wieght: 1}")
    found = issues(bundle(tmp_path, **{"p.yaml": text}), {"OPENAI_KEY": "k"})
    assert found == [f"{tmp_path}/p.yaml:7: models.gpt-4o.deployments[0].wieght: unknown key"]


def test_wrong_type_names_the_field(tmp_path):
    text = GOOD.replace("weight: 3", "weight: heavy")
    found = issues(bundle(tmp_path, **{"p.yaml": text}), {"OPENAI_KEY": "k"})
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path}/p.yaml:7: models.gpt-4o.deployments[0].weight: ")


def test_missing_env_var_is_named_and_its_neighbours_are_not_printed(tmp_path):
    found = issues(bundle(tmp_path, **{"p.yaml": GOOD}), {"OTHER": "sk-other"})
    assert found == [
        f"{tmp_path}/p.yaml:2: providers.openai-main.api_key: "
        "environment variable OPENAI_KEY is not set"
    ]


def test_a_literal_secret_is_refused(tmp_path):
    text = GOOD.replace('"${OPENAI_KEY}"', "sk-live-123")
    found = issues(bundle(tmp_path, **{"p.yaml": text}))
    assert len(found) == 1
    assert "providers.openai-main.api_key" in found[0]
    assert "sk-live-123" not in found[0]


def test_every_error_is_reported_not_just_the_first(tmp_path):
    text = GOOD.replace("provider: local", "provider: nowhere").replace(
        "models: [gpt-4o]", "models: [gpt-5]"
    )
    found = issues(bundle(tmp_path, **{"p.yaml": text}), {"OPENAI_KEY": "k"})
    assert found == [
        f"{tmp_path}/p.yaml:8: models.gpt-4o.deployments[1].provider: "
        "unknown provider 'nowhere' (not in providers)",
        f"{tmp_path}/p.yaml:12: teams.search.models[0]: unknown model 'gpt-5'",
    ]


def test_duplicate_keys_and_names_across_files_are_errors(tmp_path):
    directory = bundle(
        tmp_path,
        **{
            "a.yaml": "providers:\n  x: {type: mock}\n  x: {type: mock}\n",
            "b.yaml": "providers:\n  y: {type: mock}\nrouting: {}\n",
            "c.yaml": "providers:\n  y: {type: mock}\nrouting: {}\n",
        },
    )
    found = issues(directory)
    assert f"{tmp_path}/a.yaml:3: providers.x: duplicate key" in found
    assert (
        f"{tmp_path}/c.yaml:2: providers.y: defined twice (first at {tmp_path}/b.yaml:2)" in found
    )
    assert (
        f"{tmp_path}/c.yaml:3: routing: section defined twice (first at {tmp_path}/b.yaml:3)"
        in found
    )


def test_an_api_base_that_is_not_an_http_url_is_refused(tmp_path):
    text = GOOD.replace("http://vllm:8000/v1", "file:///etc/passwd")
    found = issues(bundle(tmp_path, **{"p.yaml": text}), {"OPENAI_KEY": "k"})
    assert len(found) == 1
    assert "providers.local.api_base" in found[0]


def test_azure_needs_api_base_and_version(tmp_path):
    found = issues(bundle(tmp_path, **{"p.yaml": "providers:\n  az: {type: azure}\n"}))
    assert found == [
        f"{tmp_path}/p.yaml:2: providers.az.api_base: required for type azure",
        f"{tmp_path}/p.yaml:2: providers.az.api_version: required for type azure",
    ]


def test_a_missing_folder_and_an_empty_folder_are_errors(tmp_path):
    assert issues(tmp_path / "nope") == [f"{tmp_path}/nope: policy directory not found"]
    assert issues(tmp_path) == [f"{tmp_path}: no *.yaml policy files found"]


def test_the_repository_example_is_valid_and_matches_the_packaged_copy():
    load_policy_dir(REPO_POLICIES, {})
    for packaged in EXAMPLE.glob("*.yaml"):
        assert (REPO_POLICIES / packaged.name).read_text() == packaged.read_text()


def test_a_broken_file_does_not_hide_the_other_files_errors(tmp_path: Path) -> None:
    """A YAML syntax error in one file and a schema error in another: both are reported,
    and nothing is said of sections the broken file would have held."""
    found = issues(
        bundle(
            tmp_path,
            **{
                "providers.yaml": "providers:\n  demo: {type: mock\n",
                "rest.yaml": "models:\n  m1:\n    deployments: [{provider: demo, model: x, weight: -1}]\n",
            },
        )
    )
    assert len(found) == 2, found
    assert "providers.yaml:3" in found[0] and "YAML syntax error" in found[0]
    assert "rest.yaml:3" in found[1] and "models.m1.deployments[0].weight" in found[1]


def test_hidden_files_are_not_policy(tmp_path: Path) -> None:
    """An editor's lock link (`.#teams.yaml`) or a hidden backup is not read at all."""
    folder = bundle(tmp_path, **{"a.yaml": GOOD, ".hidden.yaml": "teams: {x: {models: [y]}}\n"})
    (folder / ".#a.yaml").symlink_to("user@host.1234:1700000000")  # dangling, as Emacs makes it
    policy = load_policy_dir(folder, {"OPENAI_KEY": "sk-test"})
    assert set(policy.teams) == {"search", "all"}


def test_a_file_of_only_a_document_start_is_an_empty_file(tmp_path: Path) -> None:
    """`---` alone holds no section, like an empty file, never an error at a line it lacks."""
    folder = bundle(tmp_path, **{"a.yaml": GOOD, "b.yaml": "---\n"})
    assert set(load_policy_dir(folder, {"OPENAI_KEY": "sk-test"}).teams) == {"search", "all"}


def test_a_file_that_is_not_utf8_is_named_at_its_line(tmp_path: Path) -> None:
    folder = bundle(tmp_path, **{"a.yaml": GOOD})
    (folder / "b.yaml").write_bytes(b"teams:\n  x: {models: [\xff]}\n")
    [problem] = issues(folder, {"OPENAI_KEY": "sk-test"})
    assert problem.startswith(f"{folder}/b.yaml:2: not UTF-8 text")


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("  search: {models: [gpt-4o]}", "  search: null", "teams.search"),
        ("  search: {models: [gpt-4o]}", "  search: [gpt-4o]", "teams.search"),
        (
            "deployments:\n      - {provider: openai-main",
            "deployments:\n      - 7\n      - {provider: openai-main",
            "models.gpt-4o.deployments[0]",
        ),
    ],
)
def test_a_section_of_the_wrong_kind_says_so_without_naming_a_python_class(
    tmp_path, old, new, field
):
    """pydantic says "Input should be a valid dictionary or instance of TeamSpec": the
    policy author wrote YAML, not Python, and TeamSpec is no word of theirs."""
    assert old in GOOD
    found = issues(bundle(tmp_path, **{"p.yaml": GOOD.replace(old, new)}), {"OPENAI_KEY": "k"})
    assert any(f" {field}: expected a mapping (key: value pairs)" in line for line in found), found
    assert not any("Spec" in line or "instance of" in line for line in found), found
