"""Bundles whose owner removed their function: nodes drop them and run them no more.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

`fn rm NAME` removes the name and revokes every bundle the owner deployed under it: a row per
bundle, numbered in the order revoked (`seq`), so nodes poll `GET /v1/revoked?after=SEQ` for what
is new, drop those bundles from their caches and warm pools, and refuse invocations of them (404).

Hand-written and frozen: do not import p2pfaas.db.schema here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revoked_bundles",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("digest", sa.CHAR(64), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=False),
        sa.UniqueConstraint("digest", name="uq_revoked_bundles_digest"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("revoked_bundles")
