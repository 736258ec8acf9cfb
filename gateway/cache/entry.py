"""One stored answer and its bytes at rest; the backends' shared interface. No I/O.

An entry is the whole-answer JSON a non-streamed client gets (after output
guardrails), with the deployment that answered, when, the usage the gateway
settled on (the upstream's report, or its own count), and the output rules that
fired on it (a hit serves what they made, and its records name them). At rest it is one line of
metadata, a newline, then the body: one value per Redis key, one `bytes` per
memory slot, and its size is what `max_bytes` counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import orjson

from gateway.cache.key import CacheKey
from gateway.guardrails.decision import GuardrailHit
from gateway.guardrails.kinds import GuardAction, Where
from gateway.policy.compiled import CachePolicy
from gateway.usage.usage import Usage


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    body: bytes  # the whole-answer JSON
    deployment: str  # the label of the deployment that answered, for the hit's ledger row
    stored_at_ms: int
    usage: Usage | None = None  # what the answer was charged: what a hit saves and reports
    # The output rules that fired on the answer (redact, flag): the body is what they made.
    guardrails: tuple[GuardrailHit, ...] = ()


def encode(answer: CachedAnswer) -> bytes:
    meta: dict[str, object] = {
        "deployment": answer.deployment,
        "stored_at_ms": answer.stored_at_ms,
    }
    if answer.usage is not None:
        meta["usage"] = _usage_fields(answer.usage)
    if answer.guardrails:
        meta["guardrails"] = [[hit.rule, hit.action.value] for hit in answer.guardrails]
    return orjson.dumps(meta) + b"\n" + answer.body


def _usage_fields(usage: Usage) -> list[int | bool]:
    return [
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_tokens,
        usage.is_estimated,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    ]


def _usage_of(fields: object) -> Usage | None:
    """The usage `_usage_fields` wrote; None for anything else (the entry stays usable)."""
    if not isinstance(fields, list) or len(fields) != 6:
        return None
    counts = [fields[0], fields[1], fields[2], fields[4], fields[5]]
    if not all(type(n) is int and n >= 0 for n in counts) or type(fields[3]) is not bool:
        return None
    return Usage(*fields)


def _guardrails_of(fields: object) -> tuple[GuardrailHit, ...]:
    """The output rules `encode` wrote; () for anything else (the entry stays usable)."""
    if not isinstance(fields, list):
        return ()
    hits = []
    for field in fields:
        if not (isinstance(field, list) and len(field) == 2 and isinstance(field[0], str)):
            return ()
        if field[1] not in _ACTIONS:
            return ()
        hits.append(GuardrailHit(field[0], GuardAction(field[1]), Where.OUTPUT))
    return tuple(hits)


_ACTIONS = frozenset(action.value for action in GuardAction)


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
    usage, guardrails = _usage_of(fields.get("usage")), _guardrails_of(fields.get("guardrails"))
    return CachedAnswer(body, deployment, stored_at_ms, usage, guardrails)


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
