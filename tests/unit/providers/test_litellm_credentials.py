"""Which credentials a translated provider may be built with: its own fields, whole, or
(Bedrock only) none toward Bedrock's own hosts. `policy check` refuses the rest at the
provider's file, line and field; the adapter refuses the same if it is ever handed one."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.errors import PolicyInvalid
from gateway.policy.store import load_policy_dir
from gateway.providers.litellm_adapter import LitellmProvider

ENV = {"TEST_API_KEY": "sk-test-0123456789", "TEST_ID_KEY": "AKIATEST", "TEST_SECRET_KEY": "s3"}
KEYS = 'aws_access_key_id: "${TEST_ID_KEY}", aws_secret_access_key: "${TEST_SECRET_KEY}"'
LOOPBACK = "http://127.0.0.1:9"


def _check(tmp_path: Path, provider: str) -> list[str]:
    """The issues `policy check` prints for a bundle whose provider `p` (line 3) is this."""
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(
        "providers:\n"
        "  demo: {type: mock}\n"
        f"  p: {{{provider}}}\n"
        "models:\n"
        "  m: {deployments: [{provider: p, model: some-model}]}\n"
        "teams:\n"
        "  demo: {models: ['*']}\n"
    )
    try:
        load_policy_dir(folder, ENV)
    except PolicyInvalid as invalid:
        return [str(issue).removeprefix(f"{folder}/") for issue in invalid.issues]
    return []


@pytest.mark.parametrize(
    ("provider", "refused"),
    [
        ("type: anthropic", "providers.p.api_key"),
        ("type: gemini", "providers.p.api_key"),
        (f"type: gemini, api_base: '{LOOPBACK}'", "providers.p.api_key"),
        ("type: bedrock, api_base: 'http://127.0.0.1:9'", "providers.p.api_base"),
        ("type: bedrock, api_base: 'https://ec2-1-2-3-4.compute-1.amazonaws.com'", "providers.p.api_base"),
        ("type: bedrock, api_base: 'https://x.execute-api.us-east-1.amazonaws.com'", "providers.p.api_base"),
        ("type: bedrock, api_base: 'https://bedrock-runtime.us-east-1.amazonaws.com.evil.test'", "providers.p.api_base"),
        ("type: bedrock, api_base: 'https://bedrock-runtime.evil.test'", "providers.p.api_base"),
        ("type: bedrock, aws_access_key_id: '${TEST_ID_KEY}'", "providers.p.aws_secret_access_key"),
        ("type: bedrock, aws_secret_access_key: '${TEST_SECRET_KEY}'", "providers.p.aws_access_key_id"),
        (f"type: bedrock, region: 'evil.test#', {KEYS}", "providers.p.region"),
        (f"type: bedrock, region: 'us-east-1.evil.test', {KEYS}", "providers.p.region"),
        (f"type: bedrock, region: 'US-EAST-1', {KEYS}", "providers.p.region"),
    ],
)  # fmt: skip
def test_credentials_the_environment_would_complete_are_refused(
    tmp_path: Path, provider: str, refused: str
) -> None:
    """One issue, at the provider's line, naming the field."""
    assert [issue.split(": ")[:2] for issue in _check(tmp_path, provider)] == [
        ["bundle.yaml:3", refused]
    ]


@pytest.mark.parametrize(
    "provider",
    [
        "type: anthropic, api_key: '${TEST_API_KEY}'",
        f"type: gemini, api_base: '{LOOPBACK}', api_key: '${{TEST_API_KEY}}'",
        "type: bedrock",
        "type: bedrock, region: us-gov-west-1",
        "type: bedrock, api_base: 'https://bedrock-runtime.us-east-1.amazonaws.com'",
        "type: bedrock, api_base: 'https://bedrock-runtime-fips.us-gov-west-1.amazonaws.com/'",
        "type: bedrock, api_base: 'https://bedrock-runtime.cn-north-1.amazonaws.com.cn'",
        "type: bedrock, api_base: 'https://vpce-0a1b-2c3d.bedrock-runtime.eu-west-1.vpce.amazonaws.com'",
        f"type: bedrock, api_base: '{LOOPBACK}', {KEYS}",
        f"type: bedrock, api_base: '{LOOPBACK}', api_key: '${{TEST_API_KEY}}'",
        "type: openai, region: westeurope, api_key: '${TEST_API_KEY}'",
    ],
)  # fmt: skip
def test_own_credentials_and_keyless_bedrock_toward_bedrock_pass(
    tmp_path: Path, provider: str
) -> None:
    """Keys of its own go anywhere the upstream rules allow; none, only to Bedrock."""
    assert _check(tmp_path, provider) == []


def test_a_refused_region_reference_is_reported_once(tmp_path: Path) -> None:
    """`region: ${VAR}` is refused as a reference; its empty stand-in is not a second issue."""
    issues = _check(tmp_path, f"type: bedrock, region: '${{TEST_API_KEY}}', {KEYS}")
    assert [issue.split(": ")[1] for issue in issues] == ["providers.p.region"]
    assert ENV["TEST_API_KEY"] not in str(issues)


@pytest.mark.parametrize(
    ("kind", "api_base", "api_key", "extra"),
    [
        ("anthropic", None, None, {}),
        ("gemini", LOOPBACK, None, {}),
        ("gemini", LOOPBACK, "  ", {}),
        ("bedrock", LOOPBACK, None, {}),
        ("bedrock", LOOPBACK, None, {"aws_region_name": "us-east-1"}),
        ("bedrock", None, None, {"aws_access_key_id": "AKIATEST"}),
    ],
)
def test_the_adapter_refuses_what_the_environment_would_complete(
    kind: str, api_base: str | None, api_key: str | None, extra: dict[str, str]
) -> None:
    """Built from anything but a checked policy, the provider still never lets litellm
    look for a key in the gateway's environment."""
    with pytest.raises(ValueError, match="provider 'p'"):
        LitellmProvider("p", kind, api_base, api_key, extra)  # type: ignore[arg-type]


def test_keyless_bedrock_is_built_toward_bedrock() -> None:
    """The gateway's own AWS identity is for Bedrock's regional endpoint, or its own host."""
    LitellmProvider("p", "bedrock", None, None, {"aws_region_name": "us-east-1"})
    LitellmProvider("p", "bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com", None, {})
