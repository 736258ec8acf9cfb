"""An external issuer's key URLs obey the upstream rules (gateway/policy/compiled.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.errors import PolicyInvalid
from gateway.policy.store import load_policy_dir

BUNDLE = """\
teams:
  search: {{models: []}}
auth:
  issuers:
    - issuer: "{issuer}"
      audience: llm-gateway
{extra}
"""


def problems(tmp_path: Path, env: dict[str, str], issuer: str, extra: str = "") -> list[str]:
    (tmp_path / "bundle.yaml").write_text(BUNDLE.format(issuer=issuer, extra=extra))
    try:
        load_policy_dir(tmp_path, env)
    except PolicyInvalid as invalid:
        return [str(issue).replace(f"{tmp_path}/", "") for issue in invalid.issues]
    return []


@pytest.mark.parametrize(
    "jwks_uri",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/keys",
        "http://169\u3002254\u3002169\u3002254/keys",
        "http://[64:ff9b::a9fe:a9fe]/keys",
    ],
)
def test_a_jwks_uri_at_a_metadata_address_is_refused_at_its_line(
    tmp_path: Path, jwks_uri: str
) -> None:
    """Any caller could make the gateway fetch it by sending a token naming this issuer."""
    found = problems(tmp_path, {}, "https://idp.example.com", f'      jwks_uri: "{jwks_uri}"')
    assert len(found) == 1, found
    assert found[0].startswith("bundle.yaml:7: auth.issuers[0].jwks_uri: ")


def test_the_allow_list_bounds_a_jwks_uri_when_set(tmp_path: Path) -> None:
    extra = '      jwks_uri: "https://keys.example.com/jwks"'
    env = {"GATEWAY_UPSTREAM_ALLOW": "api.openai.com"}
    found = problems(tmp_path, env, "https://idp.example.com", extra)
    assert found == [
        "bundle.yaml:7: auth.issuers[0].jwks_uri: host keys.example.com is not in "
        "GATEWAY_UPSTREAM_ALLOW"
    ]
    env = {"GATEWAY_UPSTREAM_ALLOW": "api.openai.com,keys.example.com"}
    assert problems(tmp_path, env, "https://idp.example.com", extra) == []


def test_an_issuer_discovered_at_a_metadata_address_is_refused(tmp_path: Path) -> None:
    """Without a jwks_uri the issuer's own metadata is fetched: the rules bound the issuer."""
    found = problems(tmp_path, {}, "http://169.254.169.254/")
    assert len(found) == 1 and found[0].startswith("bundle.yaml:5: auth.issuers[0].issuer: ")


def test_a_loopback_issuer_is_accepted_without_an_allow_list(tmp_path: Path) -> None:
    """Keys are not requests to an upstream: the gateway's own port is no loop."""
    assert problems(tmp_path, {"GATEWAY_PORT": "8080"}, "http://127.0.0.1:8080") == []
