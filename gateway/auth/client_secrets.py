"""Client secrets: scrypt hashes with their parameters, checked at a constant cost.

Owns the stored form `scrypt$N$r$p$salt$digest` (parameters travel with the
hash, so the cost can grow without invalidating old clients) and its check.
Both are CPU-bound by design (~60 ms): callers on the event loop run them in a
thread. Pure functions; no I/O, no logging, and never a secret in an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

MAX_SECRET_CHARS = 512
MAX_MEMORY_BYTES = 2**26  # 64 MiB: four times what the default parameters need


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost; the default takes ~60 ms and 16 MiB per check."""

    n: int = 2**14
    r: int = 8
    p: int = 1

    def derive(self, secret: str, salt: bytes) -> bytes:
        return hashlib.scrypt(
            secret.encode(),
            salt=salt,
            n=self.n,
            r=self.r,
            p=self.p,
            dklen=32,
            maxmem=MAX_MEMORY_BYTES,
        )


DEFAULT_SCRYPT = ScryptParams()
_DUMMY_SALT = b"\0" * 16
_DUMMY_DIGEST = b"\0" * 32


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str, params: ScryptParams = DEFAULT_SCRYPT) -> str:
    """`scrypt$N$r$p$salt$digest` with a fresh 16-byte salt. CPU-bound: call it in a thread."""
    salt = secrets.token_bytes(16)
    digest = params.derive(secret, salt)
    return f"scrypt${params.n}${params.r}${params.p}${_b64(salt)}${_b64(digest)}"


def _parse(stored: str) -> tuple[ScryptParams, bytes, bytes] | None:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        params = ScryptParams(int(n), int(r), int(p))
        raw_salt, raw_digest = _unb64(salt), _unb64(digest)
    except ValueError:
        return None
    # Bounded so that a damaged row cannot make one check eat the machine.
    if kind != "scrypt" or not (params.n >= 2 and params.n & (params.n - 1) == 0):
        return None
    if not (params.r >= 1 and 1 <= params.p <= 4 and len(raw_digest) == 32):
        return None
    if 128 * params.n * params.r > MAX_MEMORY_BYTES:
        return None
    return params, raw_salt, raw_digest


def verify_secret(secret: str, stored: str | None) -> bool:
    """Does `secret` match `stored`? CPU-bound (~60 ms): call it in a thread.

    No stored hash (an unknown or revoked client) or an unreadable one costs a
    full derivation too, so the answer's timing does not tell which case it was;
    the digests are compared in constant time.
    """
    parsed = _parse(stored) if stored is not None else None
    if parsed is None or len(secret) > MAX_SECRET_CHARS:
        hmac.compare_digest(
            DEFAULT_SCRYPT.derive(secret[:MAX_SECRET_CHARS], _DUMMY_SALT), _DUMMY_DIGEST
        )
        return False
    params, salt, digest = parsed
    return hmac.compare_digest(params.derive(secret, salt), digest)
