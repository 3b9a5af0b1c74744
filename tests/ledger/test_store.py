"""`LedgerStore` on SQLite and MariaDB: transfers, grants, corrections, vouchers' holds, payouts."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.schema import entries, transfers
from p2pfaas.errors import NotFound, Refused
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.policy import AccountKind, IllegalTransition, PayoutState
from p2pfaas.ledger.postings import GRANTS_ACCOUNT, InsufficientFunds
from p2pfaas.ledger.store import LedgerStore
from tests.ledger.conftest import T0, balance, keys, voucher


async def count(db: Database, table: sa.Table) -> int:
    async def work(connection: AsyncConnection) -> int:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0)

    return await db.run(work, what="count", write=False)


async def test_grant_is_double_entry_and_idempotent(store: LedgerStore, db: Database) -> None:
    alice = await store.user_account(1, AccountKind.LESSEE, now=T0)
    assert await store.user_account(1, AccountKind.LESSEE, now=T0) == alice
    first = await store.grant(ref="r1", account_id=alice, amount_micro=500, now=T0)
    assert first is not None
    assert await store.grant(ref="r1", account_id=alice, amount_micro=500, now=T0) is None  # a repeat
    assert await balance(store, alice) == 500
    grants = await store.open_account(GRANTS_ACCOUNT, AccountKind.EXTERNAL, now=T0)
    assert await balance(store, grants) == -500
    assert await count(db, transfers) == 1 and await count(db, entries) == 2
    assert await audit(db) == []
    with pytest.raises(Refused):
        await store.grant(ref="r2", account_id=alice, amount_micro=0, now=T0)


async def test_balances_never_go_negative_and_a_refused_transfer_leaves_no_trace(
    store: LedgerStore, db: Database
) -> None:
    alice = await store.user_account(1, AccountKind.LESSEE, now=T0)
    bob = await store.user_account(2, AccountKind.LESSEE, now=T0)
    await store.grant(ref="g", account_id=alice, amount_micro=100, now=T0)
    with pytest.raises(InsufficientFunds):
        await store.correct(ref="c1", memo="too much", legs={alice: -101, bob: 101}, now=T0)
    assert (await balance(store, alice), await balance(store, bob)) == (100, 0)
    assert await count(db, transfers) == 1  # the failed transfer rolled back whole
    # Mistakes are corrected by new transfers, never by edits.
    assert await store.correct(ref="c2", memo="moved by mistake", legs={alice: -30, bob: 30}, now=T0)
    assert await store.correct(ref="c3", memo="undo c2", legs={alice: 30, bob: -30}, now=T0)
    assert (await balance(store, alice), await balance(store, bob)) == (100, 0)
    assert await count(db, entries) == 6
    assert await audit(db) == []


async def test_unknown_account_is_not_found(store: LedgerStore) -> None:
    with pytest.raises(NotFound):
        await store.account(999)


async def test_concurrent_vouchers_never_overdraw(store: LedgerStore, db: Database) -> None:
    anchor = keys("anchor")
    account = await store.user_account(1, AccountKind.LESSEE, now=T0)
    await store.grant(ref="g", account_id=account, amount_micro=1000, now=T0)
    lessee = keys("lessee")

    async def try_open(n: int) -> bool:
        try:
            v = voucher(f"v{n}", lessee, 300, expires_at=T0 + 60, anchor=anchor)
            await store.open_voucher(v, lessee_account_id=account, owner_user_id=1, now=T0)
        except InsufficientFunds:
            return False
        return True

    opened = await asyncio.gather(*(try_open(n) for n in range(8)))
    assert sum(opened) == 3
    assert await balance(store, account) == 100
    assert await audit(db) == []


async def test_payout_moves_through_pending_to_paid_or_failed(store: LedgerStore, db: Database) -> None:
    earner = await store.user_account(7, AccountKind.VOLUNTEER, now=T0)
    await store.grant(ref="g", account_id=earner, amount_micro=1000, now=T0)
    assert await store.request_payout(
        payout_id="p1", account_id=earner, amount_micro=600, destination="iban", now=T0
    )
    assert not await store.request_payout(
        payout_id="p1", account_id=earner, amount_micro=600, destination="iban", now=T0
    )
    assert await balance(store, earner) == 400
    with pytest.raises(InsufficientFunds):
        await store.request_payout(
            payout_id="p2", account_id=earner, amount_micro=401, destination="x", now=T0
        )
    assert (await store.payout("p1")).state == "pending"
    paid = await store.settle_payout("p1", PayoutState.PAID, now=T0 + 1)
    assert paid.state == "paid"
    assert (await store.settle_payout("p1", PayoutState.PAID, now=T0 + 2)).state == "paid"  # a repeat
    with pytest.raises(IllegalTransition):
        await store.settle_payout("p1", PayoutState.FAILED, now=T0 + 3)
    assert await store.request_payout(
        payout_id="p3", account_id=earner, amount_micro=400, destination="x", now=T0
    )
    assert (await store.settle_payout("p3", PayoutState.FAILED, now=T0 + 1)).state == "failed"
    assert await balance(store, earner) == 400  # a failed payout gives the money back
    with pytest.raises(NotFound):
        await store.settle_payout("nope", PayoutState.PAID, now=T0)
    assert await audit(db) == []
