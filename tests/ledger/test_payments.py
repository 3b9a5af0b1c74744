"""`Payments`: top-ups through a provider; the manual one needs an operator and counts each transfer once."""

from __future__ import annotations

import pytest

from p2pfaas.db import Database
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.payments import ManualPayments, PaymentRefused, Payments, TopUp
from p2pfaas.ledger.policy import AccountKind
from p2pfaas.ledger.store import LedgerStore
from tests.ledger.conftest import T0, balance


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
