"""Double-entry primitives (`p2pfaas.ledger.postings`) on SQLite and MariaDB: accounts made once, a
transfer's legs sum to zero and move balances with their entries, a repeated ref is a no-op, and an
overdraft or an amount past the bound leaves nothing behind."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.schema import accounts, entries
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.policy import AccountKind
from p2pfaas.ledger.postings import (
    AmountOutOfRange,
    InsufficientFunds,
    check_transfer_amount,
    ensure_account,
    post_transfer,
)
from p2pfaas.money import MAX_AMOUNT_MICRO
from tests.ledger.conftest import T0


async def balances(db: Database) -> dict[str, int]:
    async def read(connection: AsyncConnection) -> dict[str, int]:
        rows = await connection.execute(sa.select(accounts.c.name, accounts.c.balance_micro))
        return {row.name: row.balance_micro for row in rows}

    return await db.run(read, what="read", write=False)


async def test_a_transfer_moves_balances_with_its_entries_once(db: Database) -> None:
    async def setup(connection: AsyncConnection) -> tuple[int, int]:
        outside = await ensure_account(
            connection, "outside", AccountKind.EXTERNAL, owner_user_id=None, now=T0
        )
        alice = await ensure_account(connection, "user:1", AccountKind.LESSEE, owner_user_id=1, now=T0)
        again = await ensure_account(connection, "user:1", AccountKind.LESSEE, owner_user_id=1, now=T0)
        assert again == alice
        return outside, alice

    outside, alice = await db.run(setup, what="setup")

    async def pay(connection: AsyncConnection) -> int | None:
        return await post_transfer(
            connection, kind="grant", ref="r1", memo="m", legs={outside: -70, alice: 70}, now=T0
        )

    assert await db.run(pay, what="pay") is not None
    assert await db.run(pay, what="pay again") is None  # the same ref: done before
    assert await balances(db) == {"outside": -70, "user:1": 70}

    async def count(connection: AsyncConnection) -> int:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(entries)) or 0)

    assert await db.run(count, what="count", write=False) == 2
    assert await audit(db) == []


async def test_an_overdraft_or_an_unbounded_leg_leaves_no_trace(db: Database) -> None:
    async def setup(connection: AsyncConnection) -> tuple[int, int]:
        a = await ensure_account(connection, "user:1", AccountKind.LESSEE, owner_user_id=1, now=T0)
        b = await ensure_account(connection, "user:2", AccountKind.LESSEE, owner_user_id=2, now=T0)
        return a, b

    a, b = await db.run(setup, what="setup")
    for legs, error in (
        ({a: -1, b: 1}, InsufficientFunds),
        ({a: MAX_AMOUNT_MICRO + 1, b: -MAX_AMOUNT_MICRO - 1}, AmountOutOfRange),
    ):

        async def move(connection: AsyncConnection, legs: dict[int, int] = legs) -> int | None:
            return await post_transfer(
                connection, kind="correction", ref=f"c{legs[a]}", memo="", legs=legs, now=T0
            )

        with pytest.raises(error):
            await db.run(move, what="move")
    assert await balances(db) == {"user:1": 0, "user:2": 0}
    assert await audit(db) == []


def test_a_transfer_amount_is_positive_and_bounded() -> None:
    check_transfer_amount("grant", MAX_AMOUNT_MICRO)
    for bad in (0, -5, MAX_AMOUNT_MICRO + 1, True):
        with pytest.raises(AmountOutOfRange, match="grant: amount must be within"):
            check_transfer_amount("grant", bad)
