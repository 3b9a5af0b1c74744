"""Payment channels: per voucher and node, what the lessee signed and what was paid of it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

The anchor pays a node's receipts on a voucher only within the highest cumulative total the
lessee signed for that node (`p2pfaas.channels`). A row per channel: `signed_micro` (that total),
`seq` (of the ticket that set it), `paid_micro` (what the node's settled receipts on the voucher
took of it, never more: a CHECK). Bounded like every amount since revision 0004.

Hand-written and frozen: do not import p2pfaas.db.schema here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX = 10**15


def _bounded(column: str) -> list[sa.CheckConstraint]:
    checks = [sa.CheckConstraint(f"{column} BETWEEN 0 AND {MAX}", name=f"ck_channels_{column}_bound")]
    if op.get_bind().dialect.name == "sqlite":
        checks.append(sa.CheckConstraint(f"typeof({column}) = 'integer'", name=f"ck_channels_{column}_int"))
    return checks


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("voucher_id", sa.String(64), primary_key=True),
        sa.Column("node_id", sa.CHAR(40), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("signed_micro", sa.BigInteger(), nullable=False),
        sa.Column("paid_micro", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.CheckConstraint("paid_micro <= signed_micro", name="ck_channels_paid_within_signed"),
        *_bounded("signed_micro"),
        *_bounded("paid_micro"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("channels")
