"""Bound every ledger amount and balance by +-10**15 micro-credits, and (SQLite) to integers only.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

The bound is `p2pfaas.money.MAX_AMOUNT_MICRO`, spelled out here (revisions are frozen). It keeps
every sum far inside BIGINT: on SQLite an integer overflow silently becomes a float, which the
ledger then stored as a balance. SQLite also gets `typeof(...) = 'integer'` checks, since its
columns accept any value; MariaDB's BIGINT holds only integers already.

SQLite cannot add a constraint to a table, so there the tables are rebuilt (Alembic's batch mode;
the rebuilt table keeps its name, rows and indexes). `p2pfaas.db.engine` migrates SQLite with
foreign keys off, so this checks them (`PRAGMA foreign_key_check`) before its COMMIT. Rows already
outside the bound make the upgrade fail: such a ledger needs an operator first.

Hand-written and frozen: do not import p2pfaas.db.schema here.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX = 10**15

# table -> (column, lowest allowed value)
BOUNDED: dict[str, tuple[tuple[str, int], ...]] = {
    "accounts": (("balance_micro", -MAX),),
    "entries": (("amount_micro", -MAX),),
    "vouchers": (("budget_micro", 1),),
    "payouts": (("amount_micro", 1),),
    "settlements": (("price_micro", 0), ("fee_micro", 0)),
}


def _checks(table: str) -> list[tuple[str, str]]:
    sqlite = op.get_context().dialect.name == "sqlite"
    out: list[tuple[str, str]] = []
    for column, low in BOUNDED[table]:
        out.append((f"ck_{table}_{column}_bound", f"{column} BETWEEN {low} AND {MAX}"))
        if sqlite:
            out.append((f"ck_{table}_{column}_int", f"typeof({column}) = 'integer'"))
    return out


def _check_foreign_keys() -> None:
    broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"revision 0004 left foreign keys broken: {broken[:5]}")


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for table in BOUNDED:
            with op.batch_alter_table(table, recreate="always") as batch:
                for name, condition in _checks(table):
                    batch.create_check_constraint(name, condition)
        _check_foreign_keys()
        return
    for table in BOUNDED:
        for name, condition in _checks(table):
            op.create_check_constraint(name, table, condition)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for table in BOUNDED:
            with op.batch_alter_table(table, recreate="always") as batch:
                for name, _ in _checks(table):
                    batch.drop_constraint(name, type_="check")
        _check_foreign_keys()
        return
    for table in BOUNDED:
        for name, _ in _checks(table):
            op.drop_constraint(name, table, type_="check")
