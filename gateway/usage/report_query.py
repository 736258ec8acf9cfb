"""The reads behind the usage reports: GROUP BY queries over the daily rollup.

The reports read `usage_daily` (rollup.py keeps it equal to the ledger's sums, in
the ledger writer's own transactions), never the ledger's millions of rows: a
month is a few thousand rollup rows per day at most. Integers are summed in SQL
(exact on SQLite and PostgreSQL; PostgreSQL's SUM of a BIGINT is a NUMERIC, read
back as an int here). Rows come back unordered: the renderers sort in Python so
the order does not depend on a database's collation. A key the ledger left NULL
(a refusal knows no model) stays None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.usage.ledger_table import usage_daily as daily
from gateway.usage.pricing import PriceSource
from gateway.usage.report_request import GroupKey

Key = tuple[str | int | None, ...]

_GROUP_COLUMNS: dict[GroupKey, Any] = {
    GroupKey.TEAM: daily.c.team,
    GroupKey.MODEL: daily.c.model,
    GroupKey.PROVIDER: daily.c.provider,
    GroupKey.SUBJECT: daily.c.subject,
    GroupKey.CLIENT: daily.c.client_id,
    GroupKey.DAY: daily.c.day,
    GroupKey.CACHE: daily.c.cache,
}


def _in_days(first_day: int, end_day: int) -> Any:
    """Days since the epoch in [first_day, end_day)."""
    return sa.and_(daily.c.day >= first_day, daily.c.day < end_day)


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


@dataclass(slots=True)
class Sums:
    """What a report adds up for one group; every field an exact integer."""

    requests: int = 0
    errors: int = 0  # status >= 400, refusals included
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_nanousd: int = 0

    def add(self, other: Sums) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.cost_nanousd += other.cost_nanousd


async def summary_sums(
    conn: AsyncConnection, first_day: int, end_day: int, keys: Sequence[GroupKey]
) -> dict[Key, Sums]:
    """Per group of `keys`: requests, errors, tokens, cost over days [first_day, end_day)."""
    columns = [_GROUP_COLUMNS[key] for key in keys]
    query = (
        sa.select(
            *columns,
            sa.func.sum(daily.c.requests),
            sa.func.sum(daily.c.errors),
            sa.func.sum(daily.c.input_tokens),
            sa.func.sum(daily.c.output_tokens),
            sa.func.sum(daily.c.cached_tokens),
            sa.func.sum(daily.c.cost_nanousd),
        )
        .where(_in_days(first_day, end_day))
        .group_by(*columns)
    )
    found: dict[Key, Sums] = {}
    width = len(columns)
    for row in await conn.execute(query):
        values = tuple(row)
        found[values[:width]] = Sums(*(_int(v) for v in values[width:]))
    return found


@dataclass(frozen=True, slots=True)
class UnknownPrice:
    """Rows with tokens but no price anywhere: charged zero, listed as a warning."""

    model: str | None
    deployment: str | None
    rows: int
    input_tokens: int
    output_tokens: int


async def unknown_prices(conn: AsyncConnection, first_day: int, end_day: int) -> list[UnknownPrice]:
    # A refusal that never reached a deployment is unpriced too, but nothing in it
    # was charged at zero: only rows that consumed tokens are flagged (rows without
    # tokens add nothing to the token sums, so summing every unpriced row is exact).
    with_tokens = sa.func.sum(daily.c.requests_with_tokens)
    query = (
        sa.select(
            daily.c.model,
            daily.c.deployment,
            with_tokens,
            sa.func.sum(daily.c.input_tokens),
            sa.func.sum(daily.c.output_tokens),
        )
        .where(_in_days(first_day, end_day), daily.c.price_source == PriceSource.UNKNOWN.value)
        .group_by(daily.c.model, daily.c.deployment)
        .having(with_tokens > 0)
    )
    return [
        UnknownPrice(row[0], row[1], _int(row[2]), _int(row[3]), _int(row[4]))
        for row in await conn.execute(query)
    ]


class TokenKind(StrEnum):
    """The kinds of token a row is priced by, each at its own unit price."""

    INPUT = "input"  # input tokens neither read from nor written to a prompt cache
    CACHED_INPUT = "cached_input"
    CACHE_WRITE = "cache_write"
    OUTPUT = "output"  # output tokens that are not reasoning tokens
    REASONING = "reasoning"


@dataclass(frozen=True, slots=True)
class ChargeKey:
    """What makes rows one FOCUS charge: same day, team, model, deployment and prices."""

    day: int  # days since the epoch, UTC
    team: str | None
    model: str | None
    provider: str | None
    deployment: str | None
    upstream_model: str | None
    price_source: str
    # Nano-USD per million tokens, as stored on the rows.
    price_input: int
    price_cached_input: int
    price_cache_write: int
    price_output: int
    price_reasoning: int
    extra: tuple[str | None, ...] = ()  # the values of FOCUS's optional keys (subject, client)
    cache: str | None = None  # hit, miss, bypass; None: no cache policy (x_CacheStatus)

    @property
    def is_cache_hit(self) -> bool:
        """Served from the gateway's response cache: tokens saved, nothing billed."""
        return self.cache == "hit"

    def unit_price(self, kind: TokenKind) -> int:
        """Nano-USD per million tokens of `kind`, as the rows were charged."""
        return {
            TokenKind.INPUT: self.price_input,
            TokenKind.CACHED_INPUT: self.price_cached_input,
            TokenKind.CACHE_WRITE: self.price_cache_write,
            TokenKind.OUTPUT: self.price_output,
            TokenKind.REASONING: self.price_reasoning,
        }[kind]


@dataclass(slots=True)
class ChargeSums:
    """Token quantities of each kind, split exactly as the rows were priced."""

    requests: int = 0
    errors: int = 0
    cost_nanousd: int = 0  # the rows' own costs, summed: the figure the lines must add up to
    tokens: dict[TokenKind, int] = field(default_factory=lambda: dict.fromkeys(TokenKind, 0))
    # The same quantities from rows whose tokens the gateway counted itself.
    estimated: dict[TokenKind, int] = field(default_factory=lambda: dict.fromkeys(TokenKind, 0))


_TOKEN_SUMS = {kind: daily.c[f"priced_{kind.value}"] for kind in TokenKind}
_ESTIMATED_SUMS = {kind: daily.c[f"estimated_{kind.value}"] for kind in TokenKind}
_PRICE_COLUMNS = [
    daily.c.price_source,
    daily.c.price_input,
    daily.c.price_cached_input,
    daily.c.price_cache_write,
    daily.c.price_output,
    daily.c.price_reasoning,
]


async def charge_sums(
    conn: AsyncConnection, first_day: int, end_day: int, extra: Sequence[GroupKey]
) -> dict[ChargeKey, ChargeSums]:
    """Per day, team, model, deployment, unit prices and cache status over days
    [first_day, end_day) (a cache hit's tokens never share a line with charged ones).

    The provider and upstream model follow from the deployment (it is written
    PROVIDER/UPSTREAM_MODEL), so they are read with MAX rather than grouped on.
    """
    keys = [
        daily.c.day,
        daily.c.team,
        daily.c.model,
        daily.c.deployment,
        *_PRICE_COLUMNS,
        daily.c.cache,
        *(_GROUP_COLUMNS[key] for key in extra),
    ]
    query = (
        sa.select(
            *keys,
            sa.func.max(daily.c.provider),
            sa.func.max(daily.c.upstream_model),
            sa.func.sum(daily.c.requests),
            sa.func.sum(daily.c.errors),
            sa.func.sum(daily.c.cost_nanousd),
            *(sa.func.sum(column) for column in _TOKEN_SUMS.values()),
            *(sa.func.sum(column) for column in _ESTIMATED_SUMS.values()),
        )
        .where(_in_days(first_day, end_day))
        .group_by(*keys)
    )
    found: dict[ChargeKey, ChargeSums] = {}
    width = len(keys)
    kinds = len(_TOKEN_SUMS)
    for row in await conn.execute(query):
        values = tuple(row)
        team, model, deployment, source = values[1:5]
        provider, upstream_model = values[width : width + 2]
        key = ChargeKey(
            day=_int(values[0]),
            team=team,
            model=model,
            provider=provider,
            deployment=deployment,
            upstream_model=upstream_model,
            price_source=source,
            price_input=_int(values[5]),
            price_cached_input=_int(values[6]),
            price_cache_write=_int(values[7]),
            price_output=_int(values[8]),
            price_reasoning=_int(values[9]),
            cache=values[10],
            extra=tuple(values[11:width]),
        )
        requests, errors, cost, *quantities = (_int(v) for v in values[width + 2 :])
        found[key] = ChargeSums(
            requests=requests,
            errors=errors,
            cost_nanousd=cost,
            tokens=dict(zip(_TOKEN_SUMS, quantities[:kinds], strict=True)),
            estimated=dict(zip(_TOKEN_SUMS, quantities[kinds:], strict=True)),
        )
    return found
