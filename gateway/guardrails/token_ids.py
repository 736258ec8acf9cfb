"""Prompts sent as token ids (completions `prompt`, embeddings `input`): found, counted,
read back as text and reviewed, so no guardrail is blind to them.

An upstream reads `[798, 31672, ...]` as the text it encodes; texts.py sees only
strings. Here the ids are decoded with every tiktoken encoding the gateway has
(o200k_base, cl100k_base: a model alias does not say which its upstream uses, and
guessing wrong would read a secret as noise), and each reading is scanned. A block
rule blocks; a redact rule refuses the request (the gateway does not rewrite ids:
re-encoding would need the upstream's own encoding), naming the field; a flag rule
records. Ids no encoding reads (or a non-id among them) are refused: unread ids are
unchecked ids. Decoding loads an encoding (~40 MiB, once): call on a thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.guardrails.check import MAX_MATCHES
from gateway.guardrails.decision import (
    Blocked,
    BlockReason,
    GuardrailHit,
    HitLog,
    review,
)
from gateway.guardrails.kinds import GuardAction, Where
from gateway.guardrails.scanner import MatchBudget, OutOfMatches, Scanner
from gateway.limits.token_count import encoding

ENCODINGS = ("o200k_base", "cl100k_base")
_ID_LIMIT = 2**32  # tiktoken reads ids as u32; past that it raises OverflowError
# The fields that may hold token ids, per endpoint.
ID_FIELDS: Mapping[str, str] = {"completions": "prompt", "embeddings": "input"}


@dataclass(frozen=True, slots=True)
class TokenArray:
    param: str  # where it is: "prompt", "input[2]"
    ids: tuple[Any, ...]  # as sent: readable only if every item is an int id


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Token ids no encoding reads (or a non-id among them), at `param`."""

    param: str


@dataclass(frozen=True, slots=True)
class IdsReview:
    """What the ids say (each reading), and what the rules decided about it."""

    texts: tuple[str, ...]
    hits: tuple[GuardrailHit, ...]
    blocked: Blocked | None = None


def token_arrays(endpoint: str, body: Mapping[str, Any]) -> list[TokenArray]:
    """The token-id arrays of the request: a list's top-level ids form one array (named
    by the field), each nested list another (`prompt[i]`). Anything in such a list
    that is neither text, an id nor a list comes as an array of its own (unreadable)."""
    field = ID_FIELDS.get(endpoint)
    value = body.get(field) if field else None
    if not isinstance(value, list) or all(type(item) is str for item in value):
        return []
    top: list[Any] = []
    arrays: list[TokenArray] = []
    for index, item in enumerate(value):
        if type(item) is int:
            top.append(item)
        elif isinstance(item, list):
            arrays.append(TokenArray(f"{field}[{index}]", tuple(item)))
        elif type(item) is not str:
            arrays.append(TokenArray(f"{field}[{index}]", (item,)))
    if top:
        arrays.insert(0, TokenArray(str(field), tuple(top)))
    return arrays


def id_count(arrays: Sequence[TokenArray]) -> int:
    """Tokens the arrays hold (one per id, as an upstream counts them)."""
    return sum(len(array.ids) for array in arrays)


def readings(ids: Sequence[Any]) -> tuple[str, ...]:
    """The text `ids` encode, in each encoding that reads every one of them."""
    if not all(type(i) is int and 0 <= i < _ID_LIMIT for i in ids):
        return ()
    texts = []
    for name in ENCODINGS:
        try:
            texts.append(encoding(name).decode(list(ids)))
        except KeyError:  # an id this encoding lacks (tiktoken: "Invalid token")
            continue
    return tuple(texts)


def review_ids(scanner: Scanner, arrays: Sequence[TokenArray]) -> IdsReview | Unreadable:
    """Each array's readings through the input rules (MAX_MATCHES in all, as for text)."""
    log = HitLog()
    texts: list[str] = []
    budget = MatchBudget(MAX_MATCHES)
    for array in arrays:
        read = readings(array.ids)
        if not read:
            return Unreadable(array.param)
        texts += read
        if scanner.is_empty:
            continue
        for text in read:
            try:
                result = review(scanner, text, budget)
            except OutOfMatches as out:
                hit = GuardrailHit(out.rule.name, GuardAction.BLOCK, Where.INPUT)
                blocked = Blocked(
                    out.rule.name, Where.INPUT, (*log.hits, hit), BlockReason.TOO_MANY_MATCHES
                )
                return IdsReview(tuple(texts), tuple(log.hits), blocked)
            log.add(result.fired, Where.INPUT)
            if result.blocked_by is not None:
                blocked = Blocked(result.blocked_by.name, Where.INPUT, tuple(log.hits))
                return IdsReview(tuple(texts), blocked.hits, blocked)
            redacting = next((r for r in result.fired if r.action is GuardAction.REDACT), None)
            if redacting is not None:  # it cannot redact here: it refuses instead
                hit = GuardrailHit(redacting.name, GuardAction.BLOCK, Where.INPUT)
                blocked = Blocked(
                    redacting.name,
                    Where.INPUT,
                    (*log.hits, hit),
                    BlockReason.TOKEN_IDS_NOT_REDACTABLE,
                    param=array.param,
                )
                return IdsReview(tuple(texts), blocked.hits, blocked)
    return IdsReview(tuple(texts), tuple(log.hits))
