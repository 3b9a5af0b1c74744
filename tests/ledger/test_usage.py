"""A lessee's bill and a volunteer's earnings (`p2pfaas.ledger.usage`), from the ledger, on SQLite and
MariaDB: calls and credits per function or per day, and where every credit put into vouchers went."""

from __future__ import annotations

import pytest

from p2pfaas.db import Database
from p2pfaas.errors import LocalError
from p2pfaas.ledger.policy import FeePolicy
from p2pfaas.ledger.settlement import Settler, claim_of
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.ledger.usage import earnings, usage
from tests.hostile.kit import DIGEST
from tests.ledger.conftest import LESSEE, T0, funded_voucher, keys, receipt

NODE = keys("node")


async def test_the_bill_sums_the_settled_calls_and_accounts_for_every_credit(
    store: LedgerStore, db: Database
) -> None:
    account = await funded_voucher(store, "v1", 1000)
    settler = Settler(db, fees=FeePolicy(fee_ppm=100_000))
    calls = [
        claim_of(receipt(f"i{n}", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=100))
        for n in range(3)
    ]
    assert len((await settler.settle(NODE.key_id, calls, now=T0)).paid) == 3
    bill = await usage(db, account, by="function")
    assert [(line.key, line.calls, line.charged_micro) for line in bill.lines] == [
        (f"(function {DIGEST[:12]})", 3, 330)  # its bundle is not in this registry
    ]
    assert (bill.bought_micro, bill.spent_micro, bill.returned_micro, bill.held_micro) == (1000, 330, 0, 670)
    assert bill.bought_micro == bill.spent_micro + bill.returned_micro + bill.held_micro
    (day,) = (await usage(db, account, by="day")).lines
    assert (day.key, day.calls, day.cpu_ms) == ("2023-11-14", 3, sum(10 for _ in calls))
    assert (await usage(db, account, since=T0 + 1)).lines == ()
    assert (await usage(db, account + 100)).lines == ()  # another account's vouchers paid nothing
    with pytest.raises(LocalError, match="usage is by"):
        await usage(db, account, by="hour")


async def test_earnings_count_only_the_nodes_bound_to_the_user(store: LedgerStore, db: Database) -> None:
    assert await earnings(db, 7) == ()  # no node bound to user 7
    with pytest.raises(LocalError, match="earnings are by"):
        await earnings(db, 7, by="function")
