"""Policy versions record their budgets' eras (gateway/policy/budget_eras.py): a budget
that leaves the policy and comes back counts on a new counter, rebuilt from the ledger.
Versions made before have none (NULL): their budgets keep the counters they had.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("policy_versions", sa.Column("budget_eras", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("policy_versions") as table:  # SQLite rebuilds the table
        table.drop_column("budget_eras")
