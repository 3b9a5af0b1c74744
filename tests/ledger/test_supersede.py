"""Moving a payment to the node that ran the call (`p2pfaas.ledger.supersede`), on SQLite and MariaDB:
a forwarder that billed the call first is paid nothing once the executor's receipt carries its
delegation; the executor gets its own price within its channel, the lessee the rest, and only once."""

from __future__ import annotations

from p2pfaas import tickets
from p2pfaas.db import Database
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.earners import node_account_name
from p2pfaas.ledger.policy import AccountKind, FeePolicy, Refusal
from p2pfaas.ledger.settlement import Settler
from p2pfaas.ledger.store import LedgerStore
from tests.hostile import kit
from tests.ledger.conftest import LESSEE, T0, balance, funded_voucher, keys

ENTRY, EXECUTOR = keys("entry"), keys("executor")


async def earned(store: LedgerStore, node_id: str) -> int:
    return await balance(
        store, await store.open_account(node_account_name(node_id), AccountKind.NODE, now=T0)
    )


async def test_the_executors_receipt_moves_the_forwarders_payment_once(
    store: LedgerStore, db: Database
) -> None:
    lessee = await funded_voucher(store, "v1", 1000, grant=1000)
    settler = Settler(db, fees=FeePolicy(fee_ppm=0))
    hop = tickets.delegate("fwd", EXECUTOR.key_id, ENTRY)
    ran = kit.paid_receipt(
        "fwd", node=EXECUTOR, lessee=LESSEE, voucher_id="v1", price_micro=120, issued_at=T0 + 1,
        payee=ENTRY, cap_micro=300, delegations=[hop],
    )  # fmt: skip
    billed = kit.rebill(ran, node=ENTRY, price_micro=300)  # the forwarder bills it first
    entry_channel = kit.channel("v1", node=ENTRY, lessee=LESSEE, total_micro=300)
    first = await settler.settle_receipts(ENTRY.key_id, [billed], now=T0 + 2, channel_tickets=[entry_channel])
    assert first.paid == ("fwd",) and await earned(store, ENTRY.key_id) == 300
    executor_channel = kit.channel("v1", node=EXECUTOR, lessee=LESSEE, total_micro=120)
    moved = await settler.settle_receipts(
        EXECUTOR.key_id, [ran], now=T0 + 3, channel_tickets=[executor_channel]
    )
    assert moved.paid == ("fwd",) and moved.refused == {}
    assert (await earned(store, ENTRY.key_id), await earned(store, EXECUTOR.key_id)) == (0, 120)
    assert await balance(store, lessee) == 180  # what the executor did not charge of the 300
    again = await settler.settle_receipts(
        EXECUTOR.key_id, [ran], now=T0 + 4, channel_tickets=[executor_channel]
    )
    assert again.paid == () and again.refused == {"fwd": Refusal.DUPLICATE}
    assert await earned(store, EXECUTOR.key_id) == 120
    assert await audit(db) == []


async def test_a_payment_stays_with_a_node_that_did_not_pass_the_call_on(
    store: LedgerStore, db: Database
) -> None:
    await funded_voucher(store, "v1", 1000, grant=1000)
    settler = Settler(db, fees=FeePolicy(fee_ppm=0))
    ran = kit.paid_receipt(
        "own", node=ENTRY, lessee=LESSEE, voucher_id="v1", price_micro=200, issued_at=T0 + 1
    )
    signed = [kit.channel("v1", node=ENTRY, lessee=LESSEE, total_micro=200)]
    assert (await settler.settle_receipts(ENTRY.key_id, [ran], now=T0 + 2, channel_tickets=signed)).paid == (
        "own",
    )
    # Another node's receipt for the same call, with no delegation from ENTRY: nothing moves.
    claim = kit.rebill(ran, node=EXECUTOR, price_micro=100)
    other = [kit.channel("v1", node=EXECUTOR, lessee=LESSEE, total_micro=100)]
    result = await settler.settle_receipts(EXECUTOR.key_id, [claim], now=T0 + 3, channel_tickets=other)
    assert result.paid == ()
    assert (await earned(store, ENTRY.key_id), await earned(store, EXECUTOR.key_id)) == (200, 0)
    assert await audit(db) == []
