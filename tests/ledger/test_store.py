"""`LedgerStore` on SQLite and MariaDB: transfers, grants, corrections, vouchers' holds, payouts."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas import signing
from p2pfaas.db import Database
from p2pfaas.db.schema import entries, transfers
from p2pfaas.errors import NotFound, Refused
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.issuer import VoucherIssuer, VoucherRefused, load_anchor_keys, voucher_id_for
from p2pfaas.ledger.payments import ManualPayments, PaymentRefused, Payments, TopUp
from p2pfaas.ledger.policy import AccountKind, IllegalTransition, PayoutState
from p2pfaas.ledger.postings import GRANTS_ACCOUNT, InsufficientFunds
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.messages import Voucher
from tests.ledger.conftest import T0, keys, voucher


@pytest.fixture
def store(db: Database) -> LedgerStore:
    return LedgerStore(db)


async def balance(store: LedgerStore, account_id: int) -> int:
    return (await store.account(account_id)).balance_micro


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


async def test_voucher_holds_its_budget_once_and_releases_the_rest_at_expiry(
    store: LedgerStore, db: Database
) -> None:
    anchor = await load_anchor_keys(db, now=T0)
    assert (await load_anchor_keys(db, now=T0)).public.raw == anchor.public.raw  # one key per database
    lessee = keys("lessee")
    account = await store.user_account(1, AccountKind.LESSEE, now=T0)
    await store.grant(ref="g", account_id=account, amount_micro=1000, now=T0)
    issuer = VoucherIssuer(store, anchor)

    async def issue(budget_micro: int, request_id: str, now: float = T0, ttl_s: float = 60.0) -> Voucher:
        return await issuer.issue(
            user_id=1,
            lessee_account_id=account,
            lessee_key=lessee.public.raw,
            budget_micro=budget_micro,
            ttl_s=ttl_s,
            request_id=request_id,
            now=now,
        )

    v = await issue(400, "req-1")
    assert signing.verify(v).raw == anchor.public.raw
    assert v.voucher_id == voucher_id_for(1, "req-1") and v.expires_at == T0 + 60
    again = await issue(400, "req-1", now=T0 + 5)
    assert again == v  # the same voucher, held once
    assert await balance(store, account) == 600
    assert await store.voucher_remaining(v.voucher_id) == (400, "open")
    with pytest.raises(InsufficientFunds):
        await issue(601, "req-2")
    with pytest.raises(VoucherRefused):
        await issue(1, "req-3", ttl_s=10**9)
    assert await balance(store, account) == 600
    assert await store.release_expired(now=T0 + 60 + 10, grace_s=30) == []  # not yet: grace
    assert await store.release_expired(now=T0 + 60 + 30, grace_s=30) == [v.voucher_id]
    assert await store.release_expired(now=T0 + 1000, grace_s=30) == []
    assert await store.voucher_remaining(v.voucher_id) == (0, "closed")
    assert await balance(store, account) == 1000
    assert await audit(db) == []


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


async def test_manual_top_up_needs_an_operator_and_counts_once(store: LedgerStore, db: Database) -> None:
    account = await store.user_account(1, AccountKind.LESSEE, now=T0)
    payments = Payments(store, [ManualPayments()])
    topup = TopUp(account, 2500, "bank-0042", requested_by_operator=True)
    assert await payments.top_up("manual", topup, now=T0) is not None
    assert await payments.top_up("manual", topup, now=T0) is None  # the same bank transfer again
    assert await balance(store, account) == 2500
    with pytest.raises(PaymentRefused):
        await payments.top_up("manual", TopUp(account, 1, "x", requested_by_operator=False), now=T0)
    with pytest.raises(PaymentRefused):
        await payments.top_up("card", topup, now=T0)
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
