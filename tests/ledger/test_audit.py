"""The ledger's invariants (`p2pfaas.ledger.audit`) on SQLite and MariaDB: clean books pass, and
each kind of corruption written behind the store's back is named."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.schema import accounts, entries
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.policy import AccountKind
from p2pfaas.ledger.store import LedgerStore
from tests.ledger.conftest import T0


async def test_clean_books_pass_and_each_corruption_is_named(store: LedgerStore, db: Database) -> None:
    alice = await store.user_account(1, AccountKind.LESSEE, now=T0)
    await store.grant(ref="g", account_id=alice, amount_micro=500, now=T0)
    assert await audit(db) == []

    async def drift(connection: AsyncConnection) -> None:  # a cached balance its entries do not explain
        await connection.execute(
            accounts.update()
            .where(accounts.c.account_id == alice)
            .values(balance_micro=accounts.c.balance_micro + 1)
        )

    await db.run(drift, what="drift")
    problems = await audit(db)
    assert "balances sum to 1, not 0" in problems
    assert f"account {alice} holds 501 but its entries sum to 500" in problems

    async def overdraw(connection: AsyncConnection) -> None:  # a lessee below zero, entries unbalanced
        await connection.execute(
            accounts.update().where(accounts.c.account_id == alice).values(balance_micro=-3)
        )
        await connection.execute(
            entries.update().where(entries.c.account_id == alice).values(amount_micro=-3)
        )

    await db.run(overdraw, what="overdraw")
    problems = await audit(db)
    assert any(p.startswith(f"account {alice} (") and p.endswith("is negative: -3") for p in problems), (
        problems
    )
    assert any("'s entries sum to" in p for p in problems), problems
