"""Wheels of dependency layers, stored in chunks.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

A function's lock (`p2pfaas.bundle.lock`) pins wheels by SHA-256; the lessee uploads the ones the
anchor lacks before the bundle, and nodes fetch them (peers first, the anchor last). A row per
wheel (`wheels`: its file name, size and uploader, for quotas) and its bytes in chunks of at most
4 MiB (`wheel_chunks`), each below a MySQL server's default max_allowed_packet.

Hand-written and frozen: do not import p2pfaas.db.schema here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wheels",
        sa.Column("sha256", sa.CHAR(64), primary_key=True),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("uploader_key_id", sa.CHAR(40), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_table(
        "wheel_chunks",
        sa.Column("sha256", sa.CHAR(64), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column(
            "data", sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb"), nullable=False
        ),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("wheel_chunks")
    op.drop_table("wheels")
