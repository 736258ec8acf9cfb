"""Client secrets: scrypt hashing and constant-cost verification (gateway/auth/client_secrets.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from gateway.auth.client_secrets import (
    DEFAULT_SCRYPT,
    MAX_SECRET_CHARS,
    ScryptParams,
    hash_secret,
    verify_secret,
)
from gateway.auth.clients import ClientRecord, StoredClient

CHEAP = ScryptParams(n=2**4, r=1, p=1)  # the format carries its parameters; tests stay fast
SECRET = "uBWcv-fvw2Yw3s5mANI9R_zG8vlZPlL9vgTS83DVcxc"


def test_hash_names_its_parameters_and_never_holds_the_secret() -> None:
    """The stored form is `scrypt$N$r$p$salt$digest`, without the secret in it."""
    stored = hash_secret(SECRET)
    kind, n, r, p, salt, digest = stored.split("$")
    assert (kind, int(n), int(r), int(p)) == ("scrypt", DEFAULT_SCRYPT.n, 8, 1)
    assert salt and digest and SECRET not in stored


def test_each_hash_has_its_own_salt() -> None:
    """Two clients with the same secret still store different hashes."""
    assert hash_secret(SECRET, CHEAP) != hash_secret(SECRET, CHEAP)


def test_the_right_secret_verifies_and_a_wrong_one_does_not() -> None:
    stored = hash_secret(SECRET, CHEAP)
    assert verify_secret(SECRET, stored)
    assert not verify_secret(SECRET[:-1] + "x", stored)
    assert not verify_secret(SECRET + "x", stored)
    assert not verify_secret("", stored)


def test_default_cost_hash_verifies() -> None:
    """The production parameters round-trip (one slow check)."""
    assert verify_secret(SECRET, hash_secret(SECRET))


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "plain-text-secret",
        "bcrypt$16$8$1$AAAA$AAAA",
        "scrypt$16$8$1$not base64!$AAAA",
        "scrypt$16$8$1$AAAAAAAAAAAAAAAAAAAAAA$short",
        "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43,  # N not a power of two
        "scrypt$1048576$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43,  # 1 GiB of memory
        "scrypt$16384$64$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43,  # 128 MiB of memory
        "scrypt$16$8$64$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43,  # p far too large
    ],
)
def test_a_missing_or_unreadable_hash_refuses_without_raising(stored: str | None) -> None:
    """Unknown client or a damaged row: False, and never an oversized derivation."""
    assert verify_secret(SECRET, stored) is False


def test_an_oversized_secret_is_refused() -> None:
    stored = hash_secret("x" * (MAX_SECRET_CHARS + 1), CHEAP)
    assert not verify_secret("x" * (MAX_SECRET_CHARS + 1), stored)


def _cost_s(check: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        check()
        best = min(best, time.perf_counter() - started)
    return best


def test_unknown_client_costs_as_much_as_a_wrong_secret() -> None:
    """The constant-time path: no hash, a bad hash and a wrong secret all pay one full scrypt.
    A shortcut would cost microseconds against scrypt's tens of milliseconds: bounds this
    wide still catch one, and hold on a loaded machine (a run under load read 0.45)."""
    stored = hash_secret(SECRET)
    wrong = _cost_s(lambda: verify_secret("wrong", stored))
    unknown = _cost_s(lambda: verify_secret("wrong", None))
    damaged = _cost_s(lambda: verify_secret("wrong", "garbage"))
    assert 0.2 < unknown / wrong < 5.0
    assert 0.2 < damaged / wrong < 5.0


def _stored(revoked: bool) -> StoredClient:
    record = ClientRecord(
        client_id="c-1",
        team="search",
        name=None,
        scopes=("gateway:invoke",),
        created_at=datetime(2026, 11, 25, tzinfo=UTC),
        revoked_at=datetime(2026, 11, 26, tzinfo=UTC) if revoked else None,
    )
    return StoredClient(record, hash_secret(SECRET, CHEAP))


def test_a_revoked_client_never_authenticates_even_with_its_secret() -> None:
    assert _stored(revoked=False).check_secret(SECRET)
    assert not _stored(revoked=True).check_secret(SECRET)


def test_the_hash_stays_out_of_reprs() -> None:
    stored = _stored(revoked=False)
    assert stored.secret_hash not in repr(stored)
    assert "secret" not in str(stored.record.as_json())
