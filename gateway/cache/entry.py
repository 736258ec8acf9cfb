"""One stored answer and its bytes at rest; the backends' shared interface. No I/O.

An entry is the whole-answer JSON a non-streamed client gets (after output
guardrails), with the deployment that answered and when. At rest it is one line
of metadata, a newline, then the body as sent: one value per Redis key, one
`bytes` per memory slot, and its size is what `max_bytes` counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import orjson

from gateway.cache.key import CacheKey
from gateway.policy.compiled import CachePolicy


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    body: bytes  # the whole-answer JSON
    deployment: str  # the label of the deployment that answered, for the hit's ledger row
    stored_at_ms: int


def encode(answer: CachedAnswer) -> bytes:
    meta = orjson.dumps({"deployment": answer.deployment, "stored_at_ms": answer.stored_at_ms})
    return meta + b"\n" + answer.body


def decode(raw: bytes) -> CachedAnswer | None:
    """The stored answer, or None for bytes this version did not write (a miss)."""
    meta, newline, body = raw.partition(b"\n")
    if not newline:
        return None
    try:
        fields = orjson.loads(meta)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(fields, dict):
        return None
    deployment, stored_at_ms = fields.get("deployment"), fields.get("stored_at_ms")
    if not isinstance(deployment, str) or not isinstance(stored_at_ms, int):
        return None
    return CachedAnswer(body, deployment, stored_at_ms)


class LookupStatus(StrEnum):
    HIT = "hit"
    MISS = "miss"
    UNAVAILABLE = "unavailable"  # the backend did not answer: skip the cache, serve


@dataclass(frozen=True, slots=True)
class Lookup:
    status: LookupStatus
    answer: CachedAnswer | None = None


MISS = Lookup(LookupStatus.MISS)
UNAVAILABLE = Lookup(LookupStatus.UNAVAILABLE)


class Stored(StrEnum):
    STORED = "stored"
    TOO_LARGE = "too_large"  # larger than the policy's max_bytes: never stored
    NOT_AN_ANSWER = "not_an_answer"  # an error object or no choice (rules.is_storable)
    UNAVAILABLE = "unavailable"


class CacheUnavailable(Exception):
    """Clearing could not reach the backend (lookups and stores never raise this)."""


class CacheBackend(Protocol):
    """Where entries live. `get` and `put` never raise for an unreachable backend:
    they report it, and count it in `unavailable`."""

    unavailable: int  # lookups and stores that could not reach the backend

    async def get(self, key: CacheKey) -> Lookup: ...

    async def put(self, key: CacheKey, answer: CachedAnswer, policy: CachePolicy) -> Stored: ...

    async def clear(self, team: str | None = None, model: str | None = None) -> int:
        """Remove the entries of a team and/or model (all when neither); how many.
        Raises CacheUnavailable when the backend cannot be reached."""
        ...

    async def close(self) -> None: ...
