"""A finished request → its usage-ledger row (a plain dict of the table's columns); no I/O.

The row is what the writer queues, spools as one JSON line, and inserts. Every value
is a str, int, bool or None that fits its column on SQLite and PostgreSQL alike:
the caller's text is cut and cleaned (PostgreSQL refuses NUL and lone surrogates,
which would otherwise poison a whole batch), counts are clamped to the column's
integer range. `row_from_spool` checks a line read back from disk the same way.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import sqlalchemy as sa

from gateway.context import RequestContext
from gateway.usage.ledger_table import LEDGER_COLUMNS, usage_ledger
from gateway.usage.pricing import PriceSource

MAX_TEXT_CHARS = 256  # a model alias, team, subject or client id longer than this is cut
IDENTITY_DIGEST_CHARS = 16  # hex digits of SHA-256 ending a cut subject or client id
INT32_MAX = 2**31 - 1  # the Integer columns (tokens, status, attempts, latency)
INT64_MAX = 2**63 - 1  # the BigInteger columns (money, time)
_NULLABLE = frozenset(column.name for column in usage_ledger.columns if column.nullable)
_BOOLEAN = frozenset({"stream", "tokens_estimated"})
_BIG = frozenset(
    column.name for column in usage_ledger.columns if isinstance(column.type, sa.BigInteger)
)
_TEXT = frozenset(
    column.name
    for column in usage_ledger.columns
    if column.type.python_type is str  # Text columns
)


def clean_text(value: str | None, limit: int = MAX_TEXT_CHARS) -> str | None:
    """Text that any database stores as it is: no NUL, valid UTF-8, at most `limit` chars."""
    if value is None:
        return None
    if len(value) > limit:
        value = value[:limit]
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        # A lone surrogate (from a JSON "\ud800" escape) cannot be encoded: replace it.
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def clean_identity(value: str | None) -> str | None:
    """`clean_text` for who sent a request (subject, client id): one past the bound is
    cut and ends in `#` and a digest of the whole, so two long subjects that share their
    first characters stay two users in reports."""
    if value is None or len(value) <= MAX_TEXT_CHARS:
        return clean_text(value)
    whole = value.encode("utf-8", "surrogatepass")  # a lone surrogate is text here too
    digest = hashlib.sha256(whole).hexdigest()[:IDENTITY_DIGEST_CHARS]
    return f"{clean_text(value[: MAX_TEXT_CHARS - IDENTITY_DIGEST_CHARS - 1])}#{digest}"


def _count(value: int, high: int = INT32_MAX) -> int:
    return value if 0 <= value <= high else (0 if value < 0 else high)


def _ms(seconds: float) -> int:
    return _count(round(seconds * 1000))


def ledger_row(ctx: RequestContext, latency_s: float) -> dict[str, Any]:
    """The ledger row of a finished request that took `latency_s` from start to end.

    With nothing priced (`ctx.prices` None: no upstream answered) the row costs 0 and
    says `price_source = "none"`; an answer from a model without any price costs 0
    and says `unknown`, which reports flag. A response-cache hit (`cache = 'hit'`) is
    never priced: cost 0, `price_source = "none"`, 0 attempts, the deployment that
    answered when the entry was stored, and its token columns hold the tokens it saved.
    """
    principal, deployment, prices = ctx.principal, ctx.deployment, ctx.prices
    usage = ctx.recorded_usage
    return {
        "id": ctx.key,
        "request_id": ctx.request_id,
        "at_ms": ctx.started_at_ms,
        "endpoint": ctx.endpoint,
        "team": clean_text(principal.team) if principal and principal.team else None,
        "subject": clean_identity(principal.subject) if principal else None,
        "client_id": clean_identity(principal.client_id) if principal else None,
        "model": clean_text(ctx.model),  # the caller's text, even for a 404
        "provider": deployment.provider if deployment else None,
        "deployment": deployment.label if deployment else None,
        "upstream_model": deployment.model if deployment else None,
        "stream": ctx.is_stream,
        "status": ctx.status,
        "outcome": ctx.outcome.value,
        "error_code": ctx.error_code,
        "input_tokens": _count(usage.input_tokens) if usage else 0,
        "output_tokens": _count(usage.output_tokens) if usage else 0,
        "cached_tokens": _count(usage.cached_tokens) if usage else 0,
        "cache_write_tokens": _count(usage.cache_write_tokens) if usage else 0,
        "reasoning_tokens": _count(usage.reasoning_tokens) if usage else 0,
        "tokens_estimated": usage.is_estimated if usage else False,
        "cost_nanousd": _count(ctx.cost_nanousd, INT64_MAX) if prices else 0,
        "price_source": (prices.source if prices else PriceSource.NONE).value,
        "price_input": prices.input if prices else 0,
        "price_output": prices.output if prices else 0,
        "price_cached_input": prices.cached_input if prices else 0,
        "price_cache_write": prices.cache_write if prices else 0,
        "price_reasoning": prices.reasoning if prices else 0,
        "attempts": _count(ctx.attempts),
        "latency_ms": _ms(latency_s),
        "ttft_ms": _ms(ctx.first_byte_s) if ctx.first_byte_s is not None else None,
        "guardrails": _hits(ctx),
        "cache": ctx.cache.value if ctx.cache is not None else None,
    }


def _hits(ctx: RequestContext) -> str | None:
    """The guardrail rules that fired, as JSON: names and actions, never the text."""
    if not ctx.guardrail_hits:
        return None
    hits = [{"rule": h.rule, "action": h.action, "where": h.where} for h in ctx.guardrail_hits]
    return orjson.dumps(hits).decode()


PRICE_SOURCES = frozenset(source.value for source in PriceSource)


def row_from_spool(value: Any) -> dict[str, Any] | None:
    """A row read back from a spool line, if it has every column with a usable value.

    Rows are written by `ledger_row`, so anything else is a damaged or foreign line:
    None, and the caller sets it aside instead of letting it block the rows after it.
    """
    if not isinstance(value, dict) or set(value) != set(LEDGER_COLUMNS):
        return None
    return value if all(_is_usable(name, value[name]) for name in LEDGER_COLUMNS) else None


def is_storable(row: dict[str, Any]) -> bool:
    """Does every column of `row` hold a value both databases store? `ledger_row` makes
    such rows; the writer checks only when a batch fails, to set the others apart."""
    return row_from_spool(row) is not None


def _is_usable(name: str, item: Any) -> bool:
    if item is None:
        return name in _NULLABLE
    if name in _BOOLEAN:
        return isinstance(item, bool)
    if name in _TEXT:
        return isinstance(item, str) and clean_text(item, len(item)) == item
    if isinstance(item, bool) or not isinstance(item, int):
        return False
    return 0 <= item <= (INT64_MAX if name in _BIG else INT32_MAX)
