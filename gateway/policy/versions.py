"""Policy versions in the database: 1, 2, 3…, each with author, time, reason, bundle, hash."""

from __future__ import annotations

import sqlalchemy as sa

from gateway.db import metadata

policy_versions = sa.Table(
    "policy_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("parent", sa.Integer, nullable=True),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("bundle", sa.Text, nullable=False),
    sa.Column("hash", sa.Text, nullable=False),
)
