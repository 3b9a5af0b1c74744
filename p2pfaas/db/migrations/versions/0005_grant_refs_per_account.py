"""Grant references become per account: "grant:<ref>" -> "grant:<account id>:<ref>".

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

An operator's grant reference used to be global, so a grant to one user with a reference once
used for another answered "repeat" and paid nothing. The store now keys a grant by its target
account and reference; this rewrites the grants made before, so repeating one of them after the
upgrade is still a no-op. The target is the grant's one positive entry.

Hand-written and frozen: do not import p2pfaas.db.schema here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

transfers = sa.table("transfers", sa.column("transfer_id"), sa.column("kind"), sa.column("ref"))
entries = sa.table("entries", sa.column("transfer_id"), sa.column("account_id"), sa.column("amount_micro"))


def _grants() -> list[sa.Row[Any, Any, Any]]:
    query = (
        sa.select(transfers.c.transfer_id, transfers.c.ref, entries.c.account_id)
        .join_from(transfers, entries, entries.c.transfer_id == transfers.c.transfer_id)
        .where(transfers.c.kind == "grant", entries.c.amount_micro > 0)
        .order_by(transfers.c.transfer_id)
    )
    return list(op.get_bind().execute(query).all())


def upgrade() -> None:
    bind = op.get_bind()
    for row in _grants():
        ref = f"grant:{row.account_id}:{row.ref.removeprefix('grant:')}"
        bind.execute(transfers.update().where(transfers.c.transfer_id == row.transfer_id).values(ref=ref))


def downgrade() -> None:
    bind = op.get_bind()
    for row in _grants():
        old = f"grant:{row.ref.removeprefix(f'grant:{row.account_id}:')}"
        bind.execute(transfers.update().where(transfers.c.transfer_id == row.transfer_id).values(ref=old))
