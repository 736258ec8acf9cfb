"""An api_base's scheme is case-insensitive (RFC 3986 §3.1), and checked as lower case."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.policy.candidate import candidate_from_raw
from gateway.policy.errors import PolicyInvalid


def bundle(api_base: str) -> dict[str, Any]:
    return {
        "providers": {"up": {"type": "openai-compatible", "api_base": api_base}},
        "models": {"m": {"deployments": [{"provider": "up", "model": "x"}]}},
        "teams": {"demo": {"models": ["*"]}},
    }


@pytest.mark.parametrize(
    ("written", "used"),
    [
        ("HTTP://vllm:8000/v1", "http://vllm:8000/v1"),
        ("Https://api.example.com/V1", "https://api.example.com/V1"),  # the path keeps its case
        ("hTtP://10.0.0.7/v1", "http://10.0.0.7/v1"),
    ],
)
def test_an_upper_case_scheme_is_accepted_and_used_in_lower_case(written: str, used: str) -> None:
    """`HTTP://host/v1` is the same URL as `http://host/v1`: accepted, called as the latter."""
    policy = candidate_from_raw(bundle(written), {}).policy
    assert policy.providers["up"].api_base == used


@pytest.mark.parametrize(
    "written",
    [
        "HTTP://169.254.169.254/latest",
        "HtTp://metadata.google.internal/computeMetadata/v1",
        "HTTPS://[fd00:ec2::254]/",
    ],
)
def test_metadata_hosts_stay_refused_whatever_the_scheme_case(written: str) -> None:
    """The host checks run on the normalised URL: metadata addresses are still refused."""
    with pytest.raises(PolicyInvalid) as refused:
        candidate_from_raw(bundle(written), {})
    assert "must be an http(s) URL" not in str(refused.value.issues)
    assert any("api_base" in str(issue) for issue in refused.value.issues)


def test_an_upper_case_scheme_still_keeps_credentials_and_references_out() -> None:
    """Credentials and a ${VAR} in the host are refused as they were in lower case."""
    with pytest.raises(PolicyInvalid) as refused:
        candidate_from_raw(bundle("HTTP://user:pw@host/v1"), {})
    assert "must not hold credentials" in str(refused.value.issues)
    with pytest.raises(PolicyInvalid) as refused:
        candidate_from_raw(bundle("HTTP://${HOST}/v1"), {})
    assert "must be written out" in str(refused.value.issues)


def test_other_schemes_are_still_refused() -> None:
    with pytest.raises(PolicyInvalid) as refused:
        candidate_from_raw(bundle("FTP://host/v1"), {})
    assert "must be an http(s) URL" in str(refused.value.issues)
