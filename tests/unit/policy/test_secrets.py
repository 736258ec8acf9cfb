"""Which ${...} references a policy may use, and that refusals name file:line and field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from gateway.policy import secrets as secrets_module
from gateway.policy.compiled import ProviderConfig
from gateway.policy.errors import PolicyInvalid
from gateway.policy.secrets import (
    AMBIENT_CREDENTIALS,
    DEFAULT_ENV_ALLOW,
    ReferenceRules,
    SecretUnavailable,
    address_spellings,
    file_refusal,
    is_env_name_allowed,
    parse_env_allow,
    parse_file_dirs,
    read_secret_file,
    resolve_references,
)
from gateway.policy.store import load_policy_dir


@pytest.mark.parametrize(
    ("name", "is_allowed"),
    [
        ("OPENAI_API_KEY", True),
        ("AZURE_KEY", True),
        ("HF_TOKEN", True),
        ("ANTHROPIC_API_KEY", True),
        ("GATEWAY_DATABASE_URL", False),
        ("GATEWAY_REDIS_URL", False),
        ("GATEWAY_API_KEY", False),  # matches *_API_KEY, but GATEWAY_* is never exposed
        ("GATEWAY_SIGNING_TOKEN", False),
        ("gateway_admin_key", False),  # any case
        ("Gateway_Key", False),
        ("DATABASE_URL", False),
        ("AWS_SECRET_ACCESS_KEY", False),  # the gateway's own identity: by exact name only
        ("AWS_SESSION_TOKEN", False),
        ("BEDROCK_SECRET_ACCESS_KEY", True),
        ("REDIS_PASSWORD", False),
        ("HOME", False),
        ("PATH", False),
        ("openai_api_key", False),  # patterns compare case-sensitively, as the environment does
        ("KEY", False),  # *_KEY needs the underscore
        ("_KEY", True),
        ("MY_KEYS", False),
        ("TOKEN_URL", False),
    ],
)
def test_default_patterns(name: str, *, is_allowed: bool) -> None:
    assert is_env_name_allowed(name, DEFAULT_ENV_ALLOW) == is_allowed


@pytest.mark.parametrize(
    ("patterns", "name", "is_allowed"),
    [
        ("", "OPENAI_API_KEY", False),  # empty: no variable at all
        ("OPENAI_API_KEY", "OPENAI_API_KEY", True),
        ("OPENAI_API_KEY", "AZURE_KEY", False),
        ("LLM_*", "LLM_ANYTHING", True),
        ("*", "HOME", True),
        ("*", "GATEWAY_DATABASE_URL", False),
        ("GATEWAY_*", "GATEWAY_DATABASE_URL", False),
        ("KEY_[AB]", "KEY_A", True),
        ("KEY_[AB]", "KEY_C", False),
        ("KEY_?", "KEY_1", True),
        (" A_KEY , B_KEY ", "B_KEY", True),
    ],
)
def test_custom_patterns(patterns: str, name: str, *, is_allowed: bool) -> None:
    assert is_env_name_allowed(name, parse_env_allow(patterns)) == is_allowed


@pytest.mark.parametrize("bad", ["A KEY", "A/B", "$X", "A=B", "${X}"])
def test_bad_patterns_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a variable-name pattern"):
        parse_env_allow(f"OK_KEY,{bad}")


@pytest.mark.parametrize("bad", ["run/secrets", "/run/../etc", "./x"])
def test_bad_secret_dirs_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="absolute"):
        parse_file_dirs(bad)


def test_rules_from_the_environment_name_the_variable() -> None:
    assert ReferenceRules.from_env({}) == ReferenceRules()
    with pytest.raises(ValueError, match="GATEWAY_SECRET_ENV_ALLOW"):
        ReferenceRules.from_env({"GATEWAY_SECRET_ENV_ALLOW": "A B"})
    with pytest.raises(ValueError, match="GATEWAY_SECRET_FILE_DIRS"):
        ReferenceRules.from_env({"GATEWAY_SECRET_FILE_DIRS": "relative"})


SECRET_DIRS = (Path("/run/secrets"), Path("/var/run/secrets"))


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/run/secrets/openai", None),
        ("/var/run/secrets/kubernetes.io/x", None),
        ("/run/secrets", None),  # the folder itself: reading it fails later, plainly
        ("/etc/shadow", "only under GATEWAY_SECRET_FILE_DIRS"),
        ("/run/secrets-other/x", "only under"),  # a prefix of the name is not the folder
        ("/run/secrets/../../etc/shadow", "must not contain '..'"),
        ("run/secrets/openai", "must be absolute"),
        ("", "must be absolute"),
    ],
)
def test_file_paths(path: str, problem: str | None) -> None:
    found = file_refusal(path, SECRET_DIRS)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_a_secret_file_is_read_without_its_final_newline(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("sk-file\n")
    assert read_secret_file(str(tmp_path / "key"), (tmp_path,)) == "sk-file"


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "empty"), (b"\n", "empty"), (b"\xff\xfe", "not UTF-8"), (b"x" * 70_000, "larger")],
)
def test_unusable_secret_files(tmp_path: Path, content: bytes, problem: str) -> None:
    (tmp_path / "key").write_bytes(content)
    with pytest.raises(Exception, match=problem):
        read_secret_file(str(tmp_path / "key"), (tmp_path,))


def test_a_link_out_of_the_secrets_folder_is_refused(tmp_path: Path) -> None:
    """A symlink inside the folder pointing at another file is checked where it lands."""
    secrets, outside = tmp_path / "secrets", tmp_path / "db"
    secrets.mkdir()
    outside.write_text("the gateway's database")
    os.symlink(outside, secrets / "key")
    with pytest.raises(Exception, match="after following links"):
        read_secret_file(str(secrets / "key"), (secrets,))


def test_kubernetes_style_links_inside_the_folder_are_followed(tmp_path: Path) -> None:
    data = tmp_path / "..2026_12_02" / "key"
    data.parent.mkdir()
    data.write_text("sk-k8s")
    os.symlink(data.parent, tmp_path / "..data")
    os.symlink(tmp_path / "..data" / "key", tmp_path / "key")
    assert read_secret_file(str(tmp_path / "key"), (tmp_path,)) == "sk-k8s"


def test_resolution_names_each_refused_reference_never_a_value() -> None:
    env = {"OPENAI_API_KEY": "sk-1", "GATEWAY_DATABASE_URL": "postgresql://u:pw@db/x"}
    value, problems = resolve_references(
        "${OPENAI_API_KEY}${GATEWAY_DATABASE_URL}${MISSING_KEY}${HOME}",
        "api_key",
        env,
        ReferenceRules(),
    )
    assert value == "sk-1"
    assert len(problems) == 3
    assert "GATEWAY_* settings are never exposed" in problems[0]
    assert "MISSING_KEY is not set" in problems[1]
    assert "${HOME} is refused" in problems[2] and "GATEWAY_SECRET_ENV_ALLOW" in problems[2]
    assert not any("pw@db" in p for p in problems)


def test_an_empty_variable_is_no_key() -> None:
    """Set but empty (compose's `KEY: ${KEY:-}` when the operator forgot it) is refused as
    a missing one is: a gateway up and ready that sends every call an empty key is worse."""
    rules = ReferenceRules()
    empty = {"OPENAI_API_KEY": ""}
    value, problems = resolve_references("${OPENAI_API_KEY}", "api_key", empty, rules)
    assert value == "" and problems == ["environment variable OPENAI_API_KEY is empty"]
    present = {"OPENAI_API_KEY": "sk-1"}
    assert resolve_references("${OPENAI_API_KEY}", "api_key", present, rules) == ("sk-1", [])


def test_file_references_only_in_secret_fields() -> None:
    def reader(path: str, dirs: tuple[Path, ...]) -> str:
        return "from-file"

    rules = ReferenceRules()
    assert resolve_references("${file:/run/secrets/k}", "api_key", {}, rules, reader) == (
        "from-file",
        [],
    )
    value, problems = resolve_references("${file:/run/secrets/k}", "api_version", {}, rules, reader)
    assert value == "" and "only for secret fields" in problems[0]


def write(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    (folder / "bundle.yaml").write_text(text)
    return folder


def issues(folder: Path, env: dict[str, str]) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_dir(folder, env)
    return [str(issue) for issue in caught.value.issues]


def test_a_gateway_setting_reference_is_an_error_at_file_line_and_field(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        "providers:\n"
        "  ok: {type: openai, api_key: '${OPENAI_API_KEY}'}\n"
        "  leak:\n"
        "    type: openai\n"
        "    api_key: '${GATEWAY_DATABASE_URL}'\n",
    )
    env = {"OPENAI_API_KEY": "sk", "GATEWAY_DATABASE_URL": "sqlite:///secret.db"}
    found = issues(folder, env)
    assert found == [
        f"{folder}/bundle.yaml:5: providers.leak.api_key: ${{GATEWAY_DATABASE_URL}} is refused: "
        "the gateway's own GATEWAY_* settings are never exposed"
    ]


def test_a_reference_in_the_host_of_api_base_is_refused_at_its_line(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        "providers:\n  p:\n    type: openai-compatible\n    api_base: 'http://${EVIL_TOKEN}/v1'\n",
    )
    (found,) = issues(folder, {"EVIL_TOKEN": "evil.example"})
    assert found.startswith(f"{folder}/bundle.yaml:4: providers.p.api_base: ")
    assert "may stand only in its path" in found


def test_a_reference_in_the_path_of_api_base_resolves(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        "providers:\n  p: {type: openai-compatible, api_base: 'http://vllm/${TENANT_TOKEN}/v1'}\n",
    )
    policy = load_policy_dir(folder, {"TENANT_TOKEN": "t-1"})
    assert policy.providers["p"].api_base == "http://vllm/t-1/v1"


def test_api_base_is_checked_again_after_resolution(tmp_path: Path) -> None:
    """A path reference whose value smuggles '@' or '//' still cannot move the host."""
    folder = write(
        tmp_path,
        "providers:\n  p: {type: openai-compatible, api_base: 'http://metadata.google.internal/${X_TOKEN}'}\n",
    )
    (found,) = issues(folder, {"X_TOKEN": "v1"})
    assert "providers.p.api_base" in found and "metadata" in found


def test_metadata_api_base_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        "providers:\n  p: {type: openai-compatible, api_base: 'http://169.254.169.254/latest'}\n",
    )
    (found,) = issues(folder, {})
    assert found.startswith(f"{folder}/bundle.yaml:2: providers.p.api_base: host 169.254.169.254")
    policy = load_policy_dir(folder, {"GATEWAY_UPSTREAM_ALLOW": "169.254.169.254"})
    assert policy.providers["p"].api_base == "http://169.254.169.254/latest"


def test_an_api_base_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        "providers:\n  p: {type: openai-compatible, api_base: 'https://evil.example/v1'}\n",
    )
    (found,) = issues(folder, {"GATEWAY_UPSTREAM_ALLOW": "api.openai.com,10.0.0.0/8"})
    assert "host evil.example is not in GATEWAY_UPSTREAM_ALLOW" in found


def test_a_bad_setting_is_reported_not_raised(tmp_path: Path) -> None:
    folder = write(tmp_path, "providers:\n  p: {type: mock}\n")
    (found,) = issues(folder, {"GATEWAY_UPSTREAM_ALLOW": "https://x"})
    assert found.startswith("environment: GATEWAY_UPSTREAM_ALLOW")


def test_a_mounted_secret_file_resolves_and_a_file_elsewhere_is_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "openai").write_text("sk-mounted\n")
    folder = write(
        tmp_path,
        f"providers:\n  p: {{type: openai, api_key: '${{file:{secrets}/openai}}'}}\n"
        f"  q:\n    type: openai\n    api_key: '${{file:{tmp_path}/policies/bundle.yaml}}'\n",
    )
    env = {"GATEWAY_SECRET_FILE_DIRS": str(secrets)}
    (found,) = issues(folder, env)
    assert found.startswith(f"{folder}/bundle.yaml:5: providers.q.api_key: ")
    assert "only under GATEWAY_SECRET_FILE_DIRS" in found
    (folder / "bundle.yaml").write_text(
        f"providers:\n  p: {{type: openai, api_key: '${{file:{secrets}/openai}}'}}\n"
    )
    assert load_policy_dir(folder, env).providers["p"].api_key == "sk-mounted"


def test_a_missing_secret_file_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = write(
        tmp_path, f"providers:\n  p: {{type: openai, api_key: '${{file:{tmp_path}/nope}}'}}\n"
    )
    (found,) = issues(folder, {"GATEWAY_SECRET_FILE_DIRS": str(tmp_path)})
    assert (
        f"{folder}/bundle.yaml:2: providers.p.api_key: ${{file:{tmp_path}/nope}}: cannot read"
        in found
    )


@pytest.mark.parametrize(
    "key", ["sk-abc\r\nX-Injected: 1", "sk-abc\nline2", "sk\tabc", "sk\x00abc"]
)
def test_a_secret_no_header_can_carry_is_refused_never_shown(key: str) -> None:
    """A key with a line break passed every check, then made each request a 500 (the HTTP
    client refuses the header): it is refused where the policy is checked."""
    _, problems = resolve_references(
        "${OPENAI_API_KEY}", "api_key", {"OPENAI_API_KEY": key}, ReferenceRules()
    )
    (problem,) = problems
    assert "control character" in problem and "one line" in problem
    assert key not in problem and "sk" not in problem


def test_a_secret_file_with_two_lines_is_refused_at_its_line(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "multi").write_text("sk-FILESECRET-aaaa\nsecondline\n")
    (secrets / "one").write_text("sk-FILESECRET-bbbb\r\n")  # one final line break is fine
    folder = write(
        tmp_path,
        f"providers:\n  one: {{type: openai, api_key: '${{file:{secrets}/one}}'}}\n"
        f"  multi: {{type: openai, api_key: '${{file:{secrets}/multi}}'}}\n",
    )
    (found,) = issues(folder, {"GATEWAY_SECRET_FILE_DIRS": str(secrets)})
    assert found.startswith(f"{folder}/bundle.yaml:3: providers.multi.api_key: ")
    assert "control character" in found and "FILESECRET" not in found


@pytest.mark.parametrize(
    ("api_base", "spellings"),
    [
        (None, ()),
        ("", ()),
        ("http://10.0.3.7:8000/v1", ("10.0.3.7:8000", "10.0.3.7")),
        ("https://vllm.internal/v1", ("vllm.internal", "vllm.internal")),
        ("http://vllm:8000/v1", ("vllm:8000",)),  # a bare word alone is too common to cut
        ("http://user:pw@llm.corp:9000", ("llm.corp:9000", "llm.corp")),
        ("http://[fd00::5]:8000/v1", ("[fd00::5]:8000", "fd00::5")),
        ("http://[fd00::5]/v1", ("[fd00::5]", "fd00::5")),
    ],
)
def test_where_an_upstream_runs_is_cut_from_its_errors(
    api_base: str | None, spellings: tuple[str, ...]
) -> None:
    assert address_spellings(api_base) == spellings


def test_a_provider_cuts_its_address_with_its_keys() -> None:
    config = ProviderConfig(
        "p", "openai-compatible", api_base="http://10.1.2.3:8000/v1", api_key="k3y-1234"
    )
    assert {"10.1.2.3:8000", "10.1.2.3", "k3y-1234"} <= set(config.secrets)


@pytest.mark.parametrize("name", sorted(AMBIENT_CREDENTIALS))
def test_the_gateways_own_cloud_identity_needs_its_exact_name(name: str) -> None:
    """A glob (the default `*_KEY`, `*_TOKEN`, or `*`) never reaches the variables the
    gateway's own AWS, Azure or Google identity lives in; listed by name, it may."""
    for patterns in (DEFAULT_ENV_ALLOW, ("*",), ("AWS_*", "AZURE_*", "GOOGLE_*", "ACTIONS_*")):
        assert not is_env_name_allowed(name, patterns)
    assert is_env_name_allowed(name, ("OPENAI_API_KEY", name))
    env = {name: "ambient-secret-value"}
    resolved, problems = resolve_references(f"${{{name}}}", "api_key", env, ReferenceRules())
    assert resolved == "" and len(problems) == 1
    assert "the gateway's own cloud identity" in problems[0] and "ambient" not in problems[0]
    rules = ReferenceRules(env_allow=(name,))
    assert resolve_references(f"${{{name}}}", "api_key", env, rules) == (
        "ambient-secret-value",
        [],
    )


@pytest.mark.parametrize(
    "path",
    [
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
        "/run/secrets/kubernetes.io/serviceaccount/token",
        "/var/run/secrets/azure/tokens/azure-identity-token",
        "/var/run/secrets/kubernetes.io/serviceaccount/../serviceaccount/token",
    ],
)
def test_the_pods_own_service_account_tokens_are_refused_by_default(path: str) -> None:
    refusal = file_refusal(path, ReferenceRules().file_dirs)
    assert refusal is not None
    if ".." not in path:
        assert "service-account token" in refusal
    named = (Path("/var/run/secrets/kubernetes.io/serviceaccount"),)
    if path == "/var/run/secrets/kubernetes.io/serviceaccount/token":
        assert file_refusal(path, named) is None  # named by the operator itself


def test_a_link_to_a_service_account_token_is_refused(tmp_path: Path) -> None:
    """A folder the operator allows, holding a link into a token folder it does not name."""
    secrets = tmp_path / "secrets"
    token_dir = secrets / "kubernetes.io" / "serviceaccount"
    token_dir.mkdir(parents=True)
    (token_dir / "token").write_text("eyPOD-TOKEN")
    (secrets / "openai").write_text("sk-fine")
    (secrets / "sneaky").symlink_to(token_dir / "token")
    rules_dirs = (secrets,)
    with patch_ambient(secrets):
        assert read_secret_file(str(secrets / "openai"), rules_dirs) == "sk-fine"
        assert file_refusal(str(token_dir / "token"), rules_dirs) is not None
        with pytest.raises(SecretUnavailable, match="service-account token"):
            read_secret_file(str(secrets / "sneaky"), rules_dirs)
        assert read_secret_file(str(secrets / "sneaky"), (secrets, token_dir)) == "eyPOD-TOKEN"


def patch_ambient(root: Path) -> Any:
    """AMBIENT_TOKEN_DIRS as if the secrets were mounted at `root`."""
    folders = (root / "kubernetes.io" / "serviceaccount",)
    return mock.patch.object(secrets_module, "AMBIENT_TOKEN_DIRS", folders)
