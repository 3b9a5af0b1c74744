"""Hole 12a: an idempotency reference names one operation on one account, and reuse is an error.

A grant's reference is scoped to its target account (another account's reference is a new grant,
not a "repeat" that pays nothing); a payment provider's reference is credited once, to one account
(reusing it for another account or amount is a 409). Through the real routes, SQLite and MariaDB.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.engine import open_database, run_alembic
from p2pfaas.db.schema import transfers
from p2pfaas.errors import Refused
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.policy import AccountKind
from p2pfaas.ledger.postings import IdempotencyConflict
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.ledger.wire import Balances, GrantRequest, PayoutInfo, PayoutRequest, TopUpRequest, TransferDone
from tests.anchor import ledgerkit
from tests.anchor.ledgerkit import Anchor
from tests.ledger.conftest import T0

anchor = ledgerkit.anchor  # the same fixture: a real anchor app on 127.0.0.1


async def balance_of(a: Anchor, user: str) -> int:
    own = await a.call("GET", "/v1/ledger/balance", Balances, as_user=user)
    return sum(row.balance_micro for row in own.accounts if row.name.startswith("user:"))


async def grant(a: Anchor, user: str, amount: int, ref: str) -> TransferDone:
    return await a.call(
        "POST", "/v1/ledger/grants", TransferDone, GrantRequest(user, amount, ref, ""), as_user="root"
    )


async def top_up(a: Anchor, user: str, amount: int, ref: str) -> TransferDone:
    msg = TopUpRequest("manual", user, amount, ref)
    return await a.call("POST", "/v1/ledger/topups", TransferDone, msg, as_user="root")


async def test_a_grant_reference_is_per_account(anchor: Anchor, db: Database) -> None:
    a = anchor
    first = await grant(a, "alice", 100, "welcome")
    assert (first.balance_micro, first.repeat) == (100, False)
    other = await grant(a, "mallory", 100, "welcome")  # another account: another grant
    assert (other.balance_micro, other.repeat) == (100, False)
    again = await grant(a, "alice", 100, "welcome")  # the same grant again: a no-op
    assert (again.balance_micro, again.repeat) == (100, True)
    with pytest.raises(Refused) as refused:  # the same reference for a different amount
        await grant(a, "alice", 250, "welcome")
    assert refused.value.status == 409 and "different" in refused.value.reason
    assert (await balance_of(a, "alice"), await balance_of(a, "mallory")) == (100, 100)
    assert await audit(db) == []


async def test_a_payment_reference_is_credited_once_to_one_account(anchor: Anchor, db: Database) -> None:
    a = anchor
    assert (await top_up(a, "alice", 500, "bank-7")).repeat is False
    assert (await top_up(a, "alice", 500, "bank-7")).repeat is True
    for user, amount in (("mallory", 500), ("alice", 900)):  # one real payment is not two
        with pytest.raises(Refused) as refused:
            await top_up(a, user, amount, "bank-7")
        assert refused.value.status == 409, refused.value
    assert (await balance_of(a, "alice"), await balance_of(a, "mallory")) == (500, 0)
    assert await audit(db) == []


async def test_the_store_says_which_reference_conflicts(db: Database) -> None:
    store = LedgerStore(db)
    account = await store.open_account("user:1", AccountKind.LESSEE, now=T0)
    assert await store.grant(ref="r", account_id=account, amount_micro=5, now=T0) is not None
    assert await store.grant(ref="r", account_id=account, amount_micro=5, now=T0) is None
    with pytest.raises(IdempotencyConflict, match="'grant:"):
        await store.grant(ref="r", account_id=account, amount_micro=6, now=T0)
    assert (await store.account(account)).balance_micro == 5
    assert await audit(db) == []


async def test_revision_0005_keeps_earlier_grants_repeatable(db: Database) -> None:
    store = LedgerStore(db)
    account = await store.open_account("user:1", AccountKind.LESSEE, now=T0)
    await store.grant(ref="old", account_id=account, amount_micro=7, now=T0)

    def downgrade(connection: Connection) -> None:
        run_alembic(connection, lambda config: command.downgrade(config, "0004"))

    async with db.engine.connect() as connection:
        await connection.run_sync(downgrade)
        await connection.commit()

    async def refs(connection: AsyncConnection) -> list[str]:
        return list(
            (await connection.scalars(sa.select(transfers.c.ref).where(transfers.c.kind == "grant"))).all()
        )

    assert await db.run(refs, what="refs", write=False) == ["grant:old"]  # as revision 0004 wrote them
    async with open_database(db.engine.url.render_as_string(hide_password=False)) as again:
        assert await again.run(refs, what="refs", write=False) == [f"grant:{account}:old"]
        assert await LedgerStore(again).grant(ref="old", account_id=account, amount_micro=7, now=T0) is None
        assert (await LedgerStore(again).account(account)).balance_micro == 7
        assert await audit(again) == []


async def test_a_reused_payout_id_or_correction_ref_for_something_else_is_a_conflict(
    anchor: Anchor, db: Database
) -> None:
    a = anchor
    await grant(a, "bob", 1_000, "g")
    first = await a.call(
        "POST", "/v1/payouts", PayoutInfo, PayoutRequest("p1", 0, 300, "bank"), as_user="bob"
    )
    again = await a.call(
        "POST", "/v1/payouts", PayoutInfo, PayoutRequest("p1", 0, 300, "bank"), as_user="bob"
    )
    assert first == again
    with pytest.raises(Refused) as refused:
        await a.call("POST", "/v1/payouts", PayoutInfo, PayoutRequest("p1", 0, 700, "bank"), as_user="bob")
    assert refused.value.status == 409
    assert await balance_of(a, "bob") == 700
    store = LedgerStore(db)
    bob = (await a.call("GET", "/v1/ledger/balance", Balances, as_user="bob")).accounts[0].account_id
    other = await store.open_account("user:other", AccountKind.LESSEE, now=T0)
    assert await store.correct(ref="c1", memo="", legs={bob: -100, other: 100}, now=T0) is not None
    assert await store.correct(ref="c1", memo="", legs={bob: -100, other: 100}, now=T0) is None
    with pytest.raises(IdempotencyConflict):
        await store.correct(ref="c1", memo="", legs={bob: -200, other: 200}, now=T0)
    assert await balance_of(a, "bob") == 600
    assert await audit(db) == []
