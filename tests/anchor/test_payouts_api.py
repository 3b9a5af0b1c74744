"""The payout routes (p2pfaas/anchor/payouts_api.py) on a real anchor app: a volunteer's payout is
asked once per id, seen only by its owner and the operator, and only the operator records what the
payment provider said."""

from __future__ import annotations

import pytest

from p2pfaas.db import Database
from p2pfaas.errors import NotFound, Refused
from p2pfaas.ledger.wire import Balances, GrantRequest, PayoutInfo, PayoutRequest, PayoutUpdate, TransferDone
from tests.anchor import ledgerkit
from tests.anchor.ledgerkit import Anchor
from tests.ledger import conftest as ledger_conftest

db = ledger_conftest.db
anchor = ledgerkit.anchor


async def _balance(a: Anchor, user: str) -> int:
    return (await a.call("GET", "/v1/ledger/balance", Balances, as_user=user)).accounts[0].balance_micro


async def test_a_payout_is_asked_once_per_id_and_seen_only_by_its_owner_and_the_operator(
    anchor: Anchor, db: Database
) -> None:
    a = anchor
    await a.call(
        "POST", "/v1/ledger/grants", TransferDone, GrantRequest("bob", 5_000, "g1", "earned"), as_user="root"
    )
    ask = PayoutRequest("p1", 0, 1_000, "iban")
    first = await a.call("POST", "/v1/payouts", PayoutInfo, ask, as_user="bob")
    again = await a.call("POST", "/v1/payouts", PayoutInfo, ask, as_user="bob")
    assert first == again and first.state == "pending" and first.amount_micro == 1_000
    assert await _balance(a, "bob") == 4_000  # held once, however often it is asked
    for stranger in ("mallory", "alice"):
        with pytest.raises(NotFound):
            await a.call("GET", f"/v1/payouts/{first.payout_id}", PayoutInfo, as_user=stranger)
    assert (await a.call("GET", f"/v1/payouts/{first.payout_id}", PayoutInfo, as_user="root")) == first
    with pytest.raises(Refused) as refused:  # another's account is not the caller's to pay out
        await a.call("POST", "/v1/payouts", PayoutInfo, PayoutRequest("p2", 1, 10, "iban"), as_user="bob")
    assert refused.value.status == 403


async def test_only_the_operator_records_the_providers_answer_and_a_state_must_be_known(
    anchor: Anchor, db: Database
) -> None:
    a = anchor
    await a.call(
        "POST", "/v1/ledger/grants", TransferDone, GrantRequest("bob", 5_000, "g1", "earned"), as_user="root"
    )
    payout = await a.call(
        "POST", "/v1/payouts", PayoutInfo, PayoutRequest("p1", 0, 1_000, "iban"), as_user="bob"
    )
    path = f"/v1/payouts/{payout.payout_id}/state"
    with pytest.raises(Refused) as refused:
        await a.call("POST", path, PayoutInfo, PayoutUpdate("paid"), as_user="bob")
    assert refused.value.status == 403
    with pytest.raises(Refused) as bad:
        await a.call("POST", path, PayoutInfo, PayoutUpdate("done"), as_user="root")
    assert bad.value.status == 400 and "paid' or 'failed" in str(bad.value)
    assert (await a.call("POST", path, PayoutInfo, PayoutUpdate("paid"), as_user="root")).state == "paid"
    assert (await a.call("GET", f"/v1/payouts/{payout.payout_id}", PayoutInfo, as_user="bob")).state == "paid"
