"""Fixtures for the ledger tests: every database test runs on SQLite and on a real MariaDB."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from p2pfaas import channels, signing
from p2pfaas.db import Database, RetryPolicy, open_database
from p2pfaas.db.testing import exclusive_mysql_database
from p2pfaas.identity import KeyPair, PublicKey
from p2pfaas.ledger.policy import AccountKind
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.messages import ChannelTicket, Receipt, Voucher
from tests.conftest import mysql_url_or_skip
from tests.hostile import kit

T0 = 1_700_000_000.0
DIGEST = "ab" * 32
FAST_RETRY = RetryPolicy(attempts=20, base_delay_s=0.001, max_delay_s=0.05)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        async with open_database(
            f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}", retry=FAST_RETRY
        ) as database:
            yield database
        return
    url = mysql_url_or_skip()
    async with exclusive_mysql_database(url), open_database(url, retry=FAST_RETRY) as database:
        yield database


def keys(seed: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(seed.encode()).digest())


def voucher(
    voucher_id: str, lessee: KeyPair, budget_micro: int, *, expires_at: float, anchor: KeyPair
) -> Voucher:
    return signing.sign(
        Voucher(voucher_id, lessee.public.raw, budget_micro, expires_at, signer=b"", signature=b""), anchor
    )


def receipt(
    invocation_id: str,
    *,
    node: KeyPair,
    lessee: KeyPair,
    voucher_id: str,
    price_micro: int,
    issued_at: float = T0,
    result: bytes = b"ok",
    ticket_by: KeyPair | None = None,
) -> Receipt:
    """A receipt signed by `node`, with the spend ticket of `ticket_by` (default: the lessee)."""
    return kit.paid_receipt(
        invocation_id,
        node=node,
        lessee=lessee,
        voucher_id=voucher_id,
        price_micro=price_micro,
        issued_at=issued_at,
        result=result,
        ticket_by=ticket_by,
    )


def signed_for(receipts: Iterable[Receipt], lessee: KeyPair) -> tuple[ChannelTicket, ...]:
    """The lessee's channel tickets for having received every one of `receipts`: per voucher and
    signing node, the sum of their prices (what an honest lessee's client signs, `p2pfaas.channels`)."""
    totals: dict[tuple[str, str], int] = {}
    for r in receipts:
        key = (r.voucher_id, PublicKey(r.signer).key_id)
        totals[key] = totals.get(key, 0) + r.price_micro
    return tuple(
        channels.sign_channel(voucher_id, node_id, seq=1, total_micro=total, keys=lessee)
        for (voucher_id, node_id), total in sorted(totals.items())
    )


@pytest.fixture
def store(db: Database) -> LedgerStore:
    return LedgerStore(db)


async def balance(store: LedgerStore, account_id: int) -> int:
    return (await store.account(account_id)).balance_micro


LESSEE, ANCHOR = keys("lessee"), keys("anchor")


async def funded_voucher(store: LedgerStore, voucher_id: str, budget: int, *, grant: int = 10_000) -> int:
    """User 1's lessee account, granted `grant`, holding `budget` in voucher `voucher_id` (LESSEE's,
    signed by ANCHOR) for an hour from T0."""
    account = await store.user_account(1, AccountKind.LESSEE, now=T0)
    await store.grant(ref=f"g-{voucher_id}", account_id=account, amount_micro=grant, now=T0)
    v = voucher(voucher_id, LESSEE, budget, expires_at=T0 + 3600, anchor=ANCHOR)
    await store.open_voucher(v, lessee_account_id=account, owner_user_id=1, now=T0)
    return account
