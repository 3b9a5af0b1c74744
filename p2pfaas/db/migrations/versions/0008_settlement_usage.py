"""What each settlement paid for: the function and its usage, for lessees' bills.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

`p2pfaas account usage` reports calls, CPU seconds, GB-seconds and credits per function and per
day straight from the ledger, so each settlement row now keeps what its receipt says: the
function's `digest` (NULL for a channel round's rest, `p2pfaas.ledger.rounds`, which pays for no
one call, and for rows settled before this revision), `cpu_ms` and `mb_ms` (peak memory in MB
times wall time in ms). Rows settled before this revision count 0 of both.

Hand-written and frozen: do not import p2pfaas.db.schema here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("settlements", sa.Column("digest", sa.CHAR(64), nullable=True))
    op.add_column("settlements", sa.Column("cpu_ms", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("settlements", sa.Column("mb_ms", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("settlements") as batch:
        batch.drop_column("mb_ms")
        batch.drop_column("cpu_ms")
        batch.drop_column("digest")
