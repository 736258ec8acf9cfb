"""The usage ledger's table: one row per request that reached the pipeline.

Written only by the ledger writer (batched, idempotent on `id`), read by reports
and by the budget rebuild. Money is integer nano-USD (1e-9 USD, see pricing.py) so
sums are exact on SQLite and PostgreSQL alike; time is epoch milliseconds (UTC),
so a month or a budget period is a plain integer range on both.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.db import metadata

usage_ledger = sa.Table(
    "usage_ledger",
    metadata,
    # The gateway's own id: the idempotency key (a client's x-request-id may repeat).
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("request_id", sa.Text, nullable=False),  # as the client saw it
    sa.Column("at_ms", sa.BigInteger, nullable=False),  # when the request began, epoch ms UTC
    sa.Column("endpoint", sa.Text, nullable=False),  # chat, completions, embeddings, responses
    sa.Column("team", sa.Text, nullable=True),  # whatever is known: a 401 knows no team
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("client_id", sa.Text, nullable=True),
    sa.Column("model", sa.Text, nullable=True),  # the alias the client asked for
    sa.Column("provider", sa.Text, nullable=True),
    sa.Column("deployment", sa.Text, nullable=True),  # PROVIDER/UPSTREAM_MODEL
    sa.Column("upstream_model", sa.Text, nullable=True),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("error_code", sa.Text, nullable=True),
    sa.Column("input_tokens", sa.Integer, nullable=False),
    sa.Column("output_tokens", sa.Integer, nullable=False),
    sa.Column("cached_tokens", sa.Integer, nullable=False),
    sa.Column("cache_write_tokens", sa.Integer, nullable=False),
    sa.Column("reasoning_tokens", sa.Integer, nullable=False),
    sa.Column("tokens_estimated", sa.Boolean, nullable=False),  # counted here, not reported
    sa.Column("cost_nanousd", sa.BigInteger, nullable=False),
    # The prices this row was charged at (nano-USD per million tokens): history is
    # never rewritten by a later price change. `price_source` unknown = priced at zero.
    sa.Column("price_source", sa.Text, nullable=False),
    sa.Column("price_input", sa.BigInteger, nullable=False),
    sa.Column("price_output", sa.BigInteger, nullable=False),
    sa.Column("price_cached_input", sa.BigInteger, nullable=False),
    sa.Column("price_cache_write", sa.BigInteger, nullable=False),
    sa.Column("price_reasoning", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("ttft_ms", sa.Integer, nullable=True),
    sa.Column("guardrails", sa.Text, nullable=True),  # JSON: the rules that fired, never text
    sa.Column("cache", sa.Text, nullable=True),  # hit, miss, bypass; null: no cache
    sa.Index("ix_usage_ledger_at_ms", "at_ms"),
    sa.Index("ix_usage_ledger_team_at_ms", "team", "at_ms"),
)

# The rollup's keys: every column a report groups by or a FOCUS line carries.
ROLLUP_KEYS: tuple[str, ...] = (
    "team",
    "subject",
    "client_id",
    "model",
    "provider",
    "deployment",
    "upstream_model",
    "price_source",
    "price_input",
    "price_output",
    "price_cached_input",
    "price_cache_write",
    "price_reasoning",
    "cache",  # hit, miss, bypass; None: no cache policy (reports split hits by it)
)
# What it adds up per key: raw token sums (as the ledger's columns), the tokens of
# each kind as they were priced (see rollup.py), the same from estimated rows.
ROLLUP_SUMS: tuple[str, ...] = (
    "requests",
    "errors",  # status >= 400
    "requests_with_tokens",  # rows that consumed tokens (the unknown-price warning counts them)
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "priced_input",
    "priced_cached_input",
    "priced_cache_write",
    "priced_output",
    "priced_reasoning",
    "estimated_input",
    "estimated_cached_input",
    "estimated_cache_write",
    "estimated_output",
    "estimated_reasoning",
    "cost_nanousd",
)

usage_daily = sa.Table(
    "usage_daily",
    metadata,
    # One row per UTC day and key, added to in the same transaction as the ledger
    # rows it counts (writer.py), so reports read thousands of rows, not millions.
    sa.Column("day", sa.Integer, nullable=False),  # days since the epoch, UTC
    # A digest of the key columns: NULL keys (a 401 knows no team) must still
    # conflict on upsert, which a unique index over nullable columns never does.
    sa.Column("group_key", sa.Text, nullable=False),
    *(
        sa.Column(name, usage_ledger.c[name].type, nullable=usage_ledger.c[name].nullable)
        for name in ROLLUP_KEYS
    ),
    *(sa.Column(name, sa.BigInteger, nullable=False) for name in ROLLUP_SUMS),
    sa.PrimaryKeyConstraint("day", "group_key"),
)

LEDGER_COLUMNS: tuple[str, ...] = tuple(column.name for column in usage_ledger.columns)
DAILY_COLUMNS: tuple[str, ...] = tuple(column.name for column in usage_daily.columns)
