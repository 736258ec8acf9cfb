"""Signing-key values (gateway/auth/keys.py): generation and what they reveal."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import pytest

from gateway.auth.keys import new_signing_key

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_new_key_is_rs256_with_dated_kid() -> None:
    """A generated key is RS256/2048 and its kid names the day it was made."""
    key = new_signing_key(NOW)
    assert re.fullmatch(r"k-20261125-[0-9a-f]{8}", key.kid)
    assert key.algorithm == "RS256"
    public = key.public_jwk()
    assert public["kid"] == key.kid and public["alg"] == "RS256" and public["use"] == "sig"
    assert public["kty"] == "RSA" and "d" not in public
    assert len(public["n"]) == 342  # base64url of a 2048-bit modulus
    assert new_signing_key(NOW).kid != key.kid


def test_repr_and_logs_never_show_private_key(caplog: pytest.LogCaptureFixture) -> None:
    """Logging a key shows its kid and dates, never private (or public) key material."""
    key = new_signing_key(NOW)
    private = key.private_key.as_dict(private=True)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("using %s / %r", key, key)
    for name in ("d", "p", "q", "n"):
        assert str(private[name]) not in caplog.text
    assert key.kid in caplog.text
