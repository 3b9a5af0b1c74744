"""The function registry: lessee keys, bundles, function names, volunteer nodes.

Revision ID: 0001
Revises:
Create Date: 2025-11-23

Hand-written and frozen: do not import p2pfaas.db.schema here; spell out the change, so this
revision means the same thing after the schema module moves on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def public_key() -> sa.types.TypeEngine[bytes]:
    return sa.LargeBinary().with_variant(mysql.BINARY(32), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "lessee_keys",
        sa.Column("key_id", sa.CHAR(40), nullable=False),
        sa.Column("public_key", public_key(), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_lessee_keys"),
        **MYSQL,
    )
    op.create_table(
        "bundles",
        sa.Column("digest", sa.CHAR(64), nullable=False),
        sa.Column("owner_key_id", sa.CHAR(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("runtime", sa.String(64), nullable=False),
        sa.Column("handler", sa.String(255), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("timeout_s", sa.Double(), nullable=False),
        sa.Column("deterministic", sa.Boolean(), nullable=False),
        sa.Column(
            "signed_manifest",
            sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column(
            "archive", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=False
        ),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_bundles"),
        sa.ForeignKeyConstraint(
            ["owner_key_id"], ["lessee_keys.key_id"], name="fk_bundles_owner_key_id_lessee_keys"
        ),
        **MYSQL,
    )
    op.create_index("ix_bundles_owner_key_id", "bundles", ["owner_key_id"])
    op.create_table(
        "functions",
        sa.Column("owner_key_id", sa.CHAR(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("digest", sa.CHAR(64), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("owner_key_id", "name", name="pk_functions"),
        sa.ForeignKeyConstraint(
            ["owner_key_id"], ["lessee_keys.key_id"], name="fk_functions_owner_key_id_lessee_keys"
        ),
        sa.ForeignKeyConstraint(["digest"], ["bundles.digest"], name="fk_functions_digest_bundles"),
        **MYSQL,
    )
    op.create_index("ix_functions_digest", "functions", ["digest"])
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.CHAR(40), nullable=False),
        sa.Column("public_key", public_key(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("runtimes", sa.JSON(), nullable=False),
        sa.Column("cores", sa.Double(), nullable=True),
        sa.Column("memory_mb", sa.Integer(), nullable=True),
        sa.Column("registered_at", sa.Double(), nullable=False),
        sa.Column("last_seen_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name="pk_nodes"),
        **MYSQL,
    )
    op.create_index("ix_nodes_last_seen_at", "nodes", ["last_seen_at"])


def downgrade() -> None:
    op.drop_table("nodes")
    op.drop_table("functions")
    op.drop_table("bundles")
    op.drop_table("lessee_keys")
