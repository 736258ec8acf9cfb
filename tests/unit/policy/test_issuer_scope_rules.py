"""An external issuer's allowed_scopes: what it may grant, and the check of its default_scopes."""

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
    - issuer: "https://idp.example.com/"
      audience: llm-gateway
{extra}
"""


def load(tmp_path: Path, extra: str):
    (tmp_path / "bundle.yaml").write_text(BUNDLE.format(extra=extra))
    return load_policy_dir(tmp_path, {})


def test_allowed_scopes_default_to_invoke_only(tmp_path: Path) -> None:
    (issuer,) = load(tmp_path, "").issuers
    assert issuer.allowed_scopes == ["gateway:invoke"]


def test_default_scopes_beyond_allowed_scopes_are_an_error_at_their_line(tmp_path: Path) -> None:
    """The policy check says so: an issuer grants nothing beyond allowed_scopes."""
    with pytest.raises(PolicyInvalid) as caught:
        load(tmp_path, "      default_scopes: [gateway:invoke, gateway:admin]")
    (issue,) = caught.value.issues
    assert str(issue) == (
        f"{tmp_path}/bundle.yaml:7: auth.issuers[0].default_scopes: gateway:admin not in "
        "allowed_scopes (gateway:invoke): an issuer grants nothing beyond its allowed_scopes"
    )


def test_default_scopes_within_allowed_scopes_pass(tmp_path: Path) -> None:
    extra = (
        "      allowed_scopes: [gateway:invoke, gateway:admin]\n"
        "      default_scopes: [gateway:admin]"
    )
    (issuer,) = load(tmp_path, extra).issuers
    assert issuer.default_scopes == ["gateway:admin"]


def test_an_unknown_scope_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        load(tmp_path, "      allowed_scopes: [gateway:root]")
    assert "auth.issuers[0].allowed_scopes[0]" in str(caught.value)
