"""`VoucherIssuer`: a voucher holds its budget once per request, is signed by the anchor's one key, and
gives the rest back at expiry."""

from __future__ import annotations

import pytest

from p2pfaas import signing
from p2pfaas.db import Database
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.issuer import VoucherIssuer, VoucherRefused, load_anchor_keys, voucher_id_for
from p2pfaas.ledger.policy import AccountKind
from p2pfaas.ledger.postings import InsufficientFunds
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.messages import Voucher
from tests.ledger.conftest import T0, balance, keys


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
