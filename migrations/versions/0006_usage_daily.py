"""The daily usage rollup, filled from the ledger rows already there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.usage.rollup import rebuild_rollup

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The rollup's keys as this revision creates the table (0008 adds `cache`).
_KEYS = (
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
)
_SUMS = (
    "requests",
    "errors",
    "requests_with_tokens",
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


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("team", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("client_id", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("deployment", sa.Text(), nullable=True),
        sa.Column("upstream_model", sa.Text(), nullable=True),
        sa.Column("price_source", sa.Text(), nullable=False),
        sa.Column("price_input", sa.BigInteger(), nullable=False),
        sa.Column("price_output", sa.BigInteger(), nullable=False),
        sa.Column("price_cached_input", sa.BigInteger(), nullable=False),
        sa.Column("price_cache_write", sa.BigInteger(), nullable=False),
        sa.Column("price_reasoning", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _SUMS),
        sa.PrimaryKeyConstraint("day", "group_key", name="pk_usage_daily"),
    )
    # An upgraded database reports the same totals: the rows already in the ledger.
    # (Stop the old gateways first: rows they write during the upgrade miss the rollup.)
    rebuild_rollup(op.get_bind(), _KEYS)


def downgrade() -> None:
    op.drop_table("usage_daily")
