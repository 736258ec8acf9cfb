"""The daily rollup is keyed by the response cache's status too (hit, miss, bypass, or
NULL without a cache policy), so reports can split hits' saved tokens from charged ones.
Every rollup key changes: the rollup is rebuilt from the ledger.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.usage.rollup import rebuild_rollup

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYS = (  # as 0006 left them, for the downgrade's rebuild
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


def upgrade() -> None:
    op.add_column("usage_daily", sa.Column("cache", sa.Text(), nullable=True))
    # (Stop the old gateways first: rows they write during the upgrade miss the rollup.)
    rebuild_rollup(op.get_bind(), (*_KEYS, "cache"))


def downgrade() -> None:
    with op.batch_alter_table("usage_daily") as table:  # SQLite rebuilds the table
        table.drop_column("cache")
    rebuild_rollup(op.get_bind(), _KEYS)
