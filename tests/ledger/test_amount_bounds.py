"""Hole 4: amounts and balances are bounded by `money.MAX_AMOUNT_MICRO`, at the wire and in the store.

Through the real HTTP routes, on SQLite and MariaDB. An amount past the bound (up to 2**63 and
beyond) is a 4xx, never a 500; a balance never passes the bound, however many grants; the database
itself refuses out-of-range and (SQLite) non-integer values; the audit stays clean throughout.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas import codec
from p2pfaas.db import Database, head_revision
from p2pfaas.db.schema import accounts
from p2pfaas.errors import DecodeError, Refused, StorageError
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.policy import AccountKind
from p2pfaas.ledger.postings import AmountOutOfRange, is_check_violation
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.ledger.wire import (
    Balances,
    GrantRequest,
    PayoutInfo,
    PayoutRequest,
    TopUpRequest,
    TransferDone,
    VoucherRequest,
)
from p2pfaas.messages import Receipt, Voucher
from p2pfaas.money import MAX_AMOUNT_MICRO
from tests.anchor import ledgerkit
from tests.anchor.ledgerkit import Anchor
from tests.ledger.conftest import DIGEST, T0, keys

anchor = ledgerkit.anchor  # the same fixture: a real anchor app on 127.0.0.1

M = TypeVar("M", bound=codec.Message)
HUGE = (2**63 - 1, 2**63, 2**64 - 1, 10**18, MAX_AMOUNT_MICRO + 1)


def unchecked(cls: type[M], **fields: Any) -> M:
    """A message built without its `__post_init__` checks: what a hostile client can put on the wire."""
    msg = object.__new__(cls)
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        object.__setattr__(msg, field.name, fields[field.name])
    return msg


async def balance_of(a: Anchor, user: str) -> int:
    own = await a.call("GET", "/v1/ledger/balance", Balances, as_user=user)
    return sum(row.balance_micro for row in own.accounts if row.name.startswith("user:"))


async def test_out_of_range_amounts_are_4xx_at_every_route(anchor: Anchor, db: Database) -> None:
    a = anchor
    await a.call(
        "POST", "/v1/ledger/grants", TransferDone, GrantRequest("bob", 1_000, "g0", ""), as_user="root"
    )
    lessee = keys("alice-key")
    for amount in HUGE:
        requests = [
            (
                "/v1/ledger/grants",
                "root",
                unchecked(GrantRequest, username="alice", amount_micro=amount, ref=f"g{amount}", memo=""),
            ),
            (
                "/v1/ledger/topups",
                "root",
                unchecked(
                    TopUpRequest,
                    provider="manual",
                    username="alice",
                    amount_micro=amount,
                    payment_ref=f"p{amount}",
                ),
            ),
            (
                "/v1/vouchers",
                "alice",
                unchecked(
                    VoucherRequest,
                    lessee_key=lessee.public.raw,
                    budget_micro=amount,
                    ttl_s=60.0,
                    request_id=f"v{amount}",
                ),
            ),
            (
                "/v1/payouts",
                "bob",
                unchecked(
                    PayoutRequest, payout_id=f"o{amount}", account_id=0, amount_micro=amount, destination="x"
                ),
            ),
        ]
        for path, user, msg in requests:
            with pytest.raises(Refused) as refused:
                await a.call("POST", path, TransferDone, msg, as_user=user)
            assert refused.value.status == 400, (path, amount, refused.value)
    assert await balance_of(a, "alice") == 0 and await balance_of(a, "bob") == 1_000
    assert await audit(db) == []


def test_messages_refuse_amounts_past_the_bound() -> None:
    for amount in HUGE:
        with pytest.raises(ValueError):
            GrantRequest("alice", amount, "g", "")
        with pytest.raises(DecodeError):
            codec.decode_as(
                GrantRequest,
                codec.encode(unchecked(GrantRequest, username="a", amount_micro=amount, ref="g", memo="")),
            )
        voucher = unchecked(
            Voucher,
            voucher_id="v",
            lessee_key=b"k" * 32,
            budget_micro=amount,
            expires_at=T0,
            signer=b"",
            signature=b"",
        )
        with pytest.raises(DecodeError):
            codec.decode_as(Voucher, codec.encode(voucher))
        fields = dict(
            invocation_id="i",
            digest=DIGEST,
            lessee_key=b"k" * 32,
            voucher_id="v",
            ok=True,
            cpu_ms=1,
            peak_memory_mb=1,
            wall_ms=1,
            price_micro=amount,
            result_sha256=b"",
            issued_at=T0,
            signer=b"",
            signature=b"",
            request_sha256=b"",
            ticket=None,
            delegations=(),
        )
        with pytest.raises(DecodeError):
            codec.decode_as(Receipt, codec.encode(unchecked(Receipt, **fields)))
    assert GrantRequest("alice", MAX_AMOUNT_MICRO, "g", "").amount_micro == MAX_AMOUNT_MICRO


async def test_a_balance_never_passes_the_bound(anchor: Anchor, db: Database) -> None:
    a = anchor
    done = await a.call(
        "POST",
        "/v1/ledger/grants",
        TransferDone,
        GrantRequest("alice", MAX_AMOUNT_MICRO - 1, "big", ""),
        as_user="root",
    )
    assert done.balance_micro == MAX_AMOUNT_MICRO - 1
    await a.call(
        "POST", "/v1/ledger/grants", TransferDone, GrantRequest("alice", 1, "one", ""), as_user="root"
    )
    for ref, user in (("two", "alice"), ("three", "mallory")):  # alice's balance, then the grants account's
        with pytest.raises(Refused) as refused:
            await a.call(
                "POST", "/v1/ledger/grants", TransferDone, GrantRequest(user, 1, ref, ""), as_user="root"
            )
        assert refused.value.status == 422 and "beyond" in refused.value.reason, refused.value
    with pytest.raises(Refused) as refused:  # a payment provider's top-up is held to the same bound
        await a.call(
            "POST",
            "/v1/ledger/topups",
            TransferDone,
            TopUpRequest("manual", "alice", 5, "pay"),
            as_user="root",
        )
    assert refused.value.status == 422
    assert await balance_of(a, "alice") == MAX_AMOUNT_MICRO
    assert await balance_of(a, "mallory") == 0
    assert await audit(db) == []


async def test_a_payout_beyond_the_balance_is_refused_cleanly(anchor: Anchor, db: Database) -> None:
    a = anchor
    await a.call(
        "POST", "/v1/ledger/grants", TransferDone, GrantRequest("bob", 5_000, "g", ""), as_user="root"
    )
    with pytest.raises(Refused) as refused:
        await a.call("POST", "/v1/payouts", PayoutInfo, PayoutRequest("p1", 0, 5_001, "bank"), as_user="bob")
    assert refused.value.status == 402
    with pytest.raises(Refused) as refused:
        await a.call(
            "POST", "/v1/payouts", PayoutInfo, PayoutRequest("p2", 0, MAX_AMOUNT_MICRO, "bank"), as_user="bob"
        )
    assert refused.value.status == 402
    paid = await a.call(
        "POST", "/v1/payouts", PayoutInfo, PayoutRequest("p3", 0, 5_000, "bank"), as_user="bob"
    )
    assert paid.amount_micro == 5_000 and await balance_of(a, "bob") == 0
    assert await audit(db) == []


async def _lessee(store: LedgerStore) -> int:
    return await store.open_account("user:1", AccountKind.LESSEE, now=T0)


async def test_the_store_refuses_out_of_range_amounts(db: Database) -> None:
    store = LedgerStore(db)
    account = await _lessee(store)
    for amount in (0, -1, MAX_AMOUNT_MICRO + 1, 2**63):
        with pytest.raises(AmountOutOfRange):
            await store.grant(ref=f"g{amount}", account_id=account, amount_micro=amount, now=T0)
        with pytest.raises(AmountOutOfRange):
            await store.request_payout(
                payout_id=f"p{amount}", account_id=account, amount_micro=amount, destination="", now=T0
            )
    with pytest.raises(AmountOutOfRange):  # a correction's legs are bounded too
        await store.correct(ref="c", memo="", legs={account: 2**63, account + 1: -(2**63)}, now=T0)
    assert await audit(db) == []


async def test_the_database_refuses_out_of_range_and_non_integer_balances(db: Database) -> None:
    store = LedgerStore(db)
    await store.grant(ref="g", account_id=await _lessee(store), amount_micro=10, now=T0)
    bad: list[object] = [MAX_AMOUNT_MICRO + 1, -(MAX_AMOUNT_MICRO + 1)]
    if db.dialect == "sqlite":
        bad += [1.5, "1.5e3x", 2.0**70]

    for value in bad:

        async def work(connection: AsyncConnection, value: object = value) -> None:
            await connection.execute(accounts.update().values(balance_micro=sa.literal(value)))

        with pytest.raises(StorageError) as refused:
            await db.run(work, what="write a bad balance")
        assert isinstance(refused.value.__cause__, sa_exc.DBAPIError), value
        assert is_check_violation(refused.value.__cause__), (value, refused.value)
    assert await audit(db) == []


async def test_revision_0004_adds_the_bounds_to_a_ledger_with_rows(db: Database) -> None:
    from alembic import command
    from sqlalchemy.engine import Connection

    from p2pfaas.db.engine import open_database, run_alembic

    store = LedgerStore(db)
    lessee = await _lessee(store)
    await store.grant(ref="g", account_id=lessee, amount_micro=10, now=T0)

    def downgrade(connection: Connection) -> None:
        run_alembic(connection, lambda config: command.downgrade(config, "0003"))

    async def overdraw(connection: AsyncConnection) -> None:
        await connection.execute(
            accounts.update().where(accounts.c.account_id == lessee).values(balance_micro=2**62)
        )

    async def restore(connection: AsyncConnection) -> None:
        await connection.execute(
            accounts.update().where(accounts.c.account_id == lessee).values(balance_micro=10)
        )

    async with db.engine.connect() as connection:
        await connection.run_sync(downgrade)
        await connection.commit()
    await db.run(overdraw, what="write past the bound")  # 0003 had no bound
    await db.run(restore, what="put it back")
    async with open_database(str(db.engine.url.render_as_string(hide_password=False))) as again:
        assert await again.schema_revision() == head_revision()
        assert (await LedgerStore(again).account(lessee)).balance_micro == 10
        with pytest.raises(StorageError):
            await again.run(overdraw, what="write past the bound")
        assert await audit(again) == []
