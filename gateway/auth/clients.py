"""OAuth clients of the built-in issuer: stored with a slow hash of their secret."""

from __future__ import annotations

import sqlalchemy as sa

from gateway.db import metadata

oauth_clients = sa.Table(
    "oauth_clients",
    metadata,
    sa.Column("client_id", sa.Text, primary_key=True),
    sa.Column("secret_hash", sa.Text, nullable=False),
    sa.Column("team", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)
