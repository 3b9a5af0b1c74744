"""Accounts, API tokens, key and node ownership, and the double-entry ledger (issue #5).

Revision ID: 0002
Revises: 0001
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

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def serial(name: str) -> sa.Column[int]:
    return sa.Column(
        name, sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


def public_key() -> sa.types.TypeEngine[bytes]:
    return sa.LargeBinary().with_variant(mysql.BINARY(32), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "users",
        serial("user_id"),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.UniqueConstraint("username", name="uq_users_username"),
        **MYSQL,
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_hash", sa.CHAR(64), nullable=False),
        sa.Column("token_id", sa.CHAR(16), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("scopes", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_api_tokens"),
        sa.UniqueConstraint("token_id", name="uq_api_tokens_token_id"),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], name="fk_api_tokens_user_id_users"),
        **MYSQL,
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "key_owners",
        sa.Column("key_id", sa.CHAR(40), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("public_key", public_key(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_key_owners"),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], name="fk_key_owners_user_id_users"),
        **MYSQL,
    )
    op.create_index("ix_key_owners_user_id", "key_owners", ["user_id"])
    op.create_table(
        "accounts",
        serial("account_id"),
        sa.Column("name", sa.String(96), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner_user_id", sa.BigInteger(), nullable=True),
        sa.Column("balance_micro", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.UniqueConstraint("name", name="uq_accounts_name"),
        **MYSQL,
    )
    op.create_index("ix_accounts_owner_user_id", "accounts", ["owner_user_id"])
    op.create_table(
        "transfers",
        serial("transfer_id"),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(128), nullable=False),
        sa.Column("memo", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.UniqueConstraint("ref", name="uq_transfers_ref"),
        **MYSQL,
    )
    op.create_table(
        "entries",
        serial("entry_id"),
        sa.Column("transfer_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["transfers.transfer_id"], name="fk_entries_transfer_id_transfers"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_entries_account_id_accounts"
        ),
        **MYSQL,
    )
    op.create_index("ix_entries_transfer_id", "entries", ["transfer_id"])
    op.create_index("ix_entries_account_id", "entries", ["account_id"])
    op.create_table(
        "vouchers",
        sa.Column("voucher_id", sa.String(64), nullable=False),
        sa.Column("lessee_account_id", sa.BigInteger(), nullable=False),
        sa.Column("hold_account_id", sa.BigInteger(), nullable=False),
        sa.Column("lessee_key", public_key(), nullable=False),
        sa.Column("budget_micro", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("signed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("voucher_id", name="pk_vouchers"),
        sa.ForeignKeyConstraint(
            ["lessee_account_id"], ["accounts.account_id"], name="fk_vouchers_lessee_account_id_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["hold_account_id"], ["accounts.account_id"], name="fk_vouchers_hold_account_id_accounts"
        ),
        **MYSQL,
    )
    op.create_index("ix_vouchers_expires_at", "vouchers", ["expires_at"])
    op.create_table(
        "settlements",
        sa.Column("invocation_id", sa.String(64), nullable=False),
        sa.Column("voucher_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.CHAR(40), nullable=False),
        sa.Column("price_micro", sa.BigInteger(), nullable=False),
        sa.Column("fee_micro", sa.BigInteger(), nullable=False),
        sa.Column(
            "result_sha256",
            sa.LargeBinary().with_variant(mysql.VARBINARY(32), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("attempt", sa.CHAR(32), nullable=False),
        sa.Column("transfer_id", sa.BigInteger(), nullable=True),
        sa.Column("settled_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("invocation_id", name="pk_settlements"),
        **MYSQL,
    )
    op.create_index("ix_settlements_voucher_id", "settlements", ["voucher_id"])
    op.create_table(
        "payouts",
        sa.Column("payout_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("payout_id", name="pk_payouts"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_payouts_account_id_accounts"
        ),
        **MYSQL,
    )
    op.create_index("ix_payouts_account_id", "payouts", ["account_id"])
    op.create_table(
        "reputation",
        sa.Column("node_id", sa.CHAR(40), nullable=False),
        sa.Column("agreements", sa.BigInteger(), nullable=False),
        sa.Column("disagreements", sa.BigInteger(), nullable=False),
        sa.Column("consecutive_valid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name="pk_reputation"),
        **MYSQL,
    )
    op.create_table(
        "anchor_keys",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column(
            "seed", sa.LargeBinary().with_variant(mysql.VARBINARY(32), "mysql", "mariadb"), nullable=False
        ),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_anchor_keys"),
        **MYSQL,
    )


def downgrade() -> None:
    for table in (
        "anchor_keys",
        "reputation",
        "payouts",
        "settlements",
        "vouchers",
        "entries",
        "transfers",
        "accounts",
        "key_owners",
        "api_tokens",
        "users",
    ):
        op.drop_table(table)
