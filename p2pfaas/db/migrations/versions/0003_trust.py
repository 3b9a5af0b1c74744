"""Trust: replication votes, per-replica verdicts, replicas held until their vote, advert lies (issue #5).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Hand-written and frozen: do not import p2pfaas.db.schema here; spell out the change, so this
revision means the same thing after the schema module moves on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def sha256_type() -> sa.types.TypeEngine[bytes]:
    return sa.LargeBinary().with_variant(mysql.VARBINARY(32), "mysql", "mariadb")


def upgrade() -> None:
    op.add_column("reputation", sa.Column("lies", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "replication_groups",
        sa.Column("group_id", sa.CHAR(32), nullable=False),
        sa.Column("lessee_key_id", sa.CHAR(40), nullable=False),
        sa.Column("digest", sa.CHAR(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("result_sha256", sha256_type(), nullable=True),
        sa.Column("ballots", sa.Integer(), nullable=False),
        sa.Column("reported_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", name="pk_replication_groups"),
        **MYSQL,
    )
    op.create_table(
        "replica_verdicts",
        sa.Column("invocation_id", sa.String(64), nullable=False),
        sa.Column("group_id", sa.CHAR(32), nullable=False),
        sa.Column("node_id", sa.CHAR(40), nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("decided_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("invocation_id", name="pk_replica_verdicts"),
        **MYSQL,
    )
    op.create_index("ix_replica_verdicts_group_id", "replica_verdicts", ["group_id"])
    op.create_table(
        "held_receipts",
        sa.Column("invocation_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.CHAR(40), nullable=False),
        sa.Column("first_seen_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("invocation_id", name="pk_held_receipts"),
        **MYSQL,
    )
    op.create_table(
        "advert_lies",
        sa.Column("node_id", sa.CHAR(40), nullable=False),
        sa.Column("invocation_id", sa.String(64), nullable=False),
        sa.Column("price_micro", sa.BigInteger(), nullable=False),
        sa.Column("max_price_micro", sa.BigInteger(), nullable=False),
        sa.Column("reported_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "invocation_id", name="pk_advert_lies"),
        **MYSQL,
    )


def downgrade() -> None:
    for table in ("advert_lies", "held_receipts", "replica_verdicts", "replication_groups"):
        op.drop_table(table)
    op.drop_column("reputation", "lies")
