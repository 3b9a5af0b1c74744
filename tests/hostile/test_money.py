"""Issue #14's money holes, replayed against the anchor's real receipt route; the audit after each.

Hole 2: a node that did not run a call (the entry node that forwarded it, or any node that saw
the request) bills it, at any price. Hole 3: receipts whose own signature is invalid, inside a
batch the node signed properly, were paid.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from p2pfaas import signing, tickets
from p2pfaas.anchor import payouts_api
from p2pfaas.clock import wall_time
from p2pfaas.db import Database
from p2pfaas.errors import Refused
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.wire import (
    Balances,
    BatchResult,
    GrantRequest,
    PayoutInfo,
    PayoutRequest,
    TransferDone,
    VoucherRequest,
)
from p2pfaas.messages import Receipt, Voucher
from tests.anchor.ledgerkit import Anchor
from tests.hostile import kit
from tests.ledger.conftest import T0, keys

LESSEE, ENTRY, EXECUTOR, STRANGER = keys("alice-key"), keys("entry"), keys("executor"), keys("stranger")


async def _voucher(a: Anchor, budget_micro: int = 10_000) -> Voucher:
    await a.call(
        "POST", "/v1/ledger/grants", TransferDone, GrantRequest("alice", 50_000, "g", ""), as_user="root"
    )
    await a.accounts.bind_key(a.user_ids["alice"], LESSEE.public.raw, kind="lessee", label="", now=T0)
    request = VoucherRequest(LESSEE.public.raw, budget_micro, 3600.0, "v")
    return await a.call("POST", "/v1/vouchers", Voucher, request, as_user="alice")


async def _send(a: Anchor, node: KeyPair, *receipts: Receipt, signed: int | None = None) -> BatchResult:
    """Post `receipts` with the lessee's channel ticket for `node` at `signed` in all (default: the
    sum of their prices, as if the lessee received every one of these results from `node`)."""
    total = sum(r.price_micro for r in receipts) if signed is None else signed
    voucher_id = receipts[0].voucher_id
    tickets = [kit.channel(voucher_id, node=node, lessee=LESSEE, total_micro=total, seq=total + 1)]
    return await a.call("POST", "/v1/receipts", BatchResult, kit.batch(receipts, node, with_channels=tickets))


async def _earned(a: Anchor, node_id: str) -> int:
    account_id = await a.api.settler.earning_account(node_id, now=T0)
    return (await a.api.store.account(account_id)).balance_micro


async def test_a_receipt_altered_or_with_a_garbage_signature_is_never_paid(
    anchor: Anchor, db: Database
) -> None:
    """Hole 3: only the batch's signature was checked."""
    a = anchor
    voucher = await _voucher(a)
    common: dict[str, Any] = {
        "lessee": LESSEE,
        "voucher_id": voucher.voucher_id,
        "issued_at": T0 + 1,
        "node": EXECUTOR,
    }
    genuine = kit.paid_receipt("inv-ok", price_micro=100, **common)
    raised = kit.tampered(
        kit.paid_receipt("inv-raised", price_micro=100, cap_micro=5_000, **common), price_micro=4_000
    )
    garbage = kit.garbage_signature(kit.paid_receipt("inv-garbage", price_micro=100, **common))
    result = await _send(a, EXECUTOR, genuine, raised, garbage)
    assert result.paid == ("inv-ok",)
    assert sorted((r.invocation_id, r.reason) for r in result.refused) == [
        ("inv-garbage", "bad-signature"),
        ("inv-raised", "bad-signature"),
    ]
    assert await _earned(a, EXECUTOR.key_id) == 100
    assert await audit(db) == []


async def test_only_the_node_the_lessee_named_or_delegated_to_is_paid_within_the_cap(
    anchor: Anchor, db: Database
) -> None:
    """Hole 2: a node billed a call it never ran at 1.5 credits and was paid; the executor's receipt
    was then refused as a duplicate."""
    a = anchor
    voucher = await _voucher(a)
    common: dict[str, Any] = {"lessee": LESSEE, "voucher_id": voucher.voucher_id, "issued_at": T0 + 1}
    # The lessee sent invocation "fwd" to ENTRY (its ticket's payee), capped at 300; ENTRY
    # forwarded it to EXECUTOR, which ran it for 120.
    hop = tickets.delegate("fwd", EXECUTOR.key_id, ENTRY)
    ran = kit.paid_receipt(
        "fwd", node=EXECUTOR, payee=ENTRY, price_micro=120, cap_micro=300, delegations=[hop], **common
    )
    # ENTRY bills it itself, at 1.5 credits: over the lessee's cap.
    greedy = kit.rebill(ran, node=ENTRY, price_micro=1_500_000)
    result = await _send(a, ENTRY, greedy)
    assert [(r.invocation_id, r.reason) for r in result.refused] == [("fwd", "over-ticket")]
    # A node the request never reached bills it within the cap: not its call.
    stranger = kit.rebill(ran, node=STRANGER, price_micro=300)
    result = await _send(a, STRANGER, stranger)
    assert [(r.invocation_id, r.reason) for r in result.refused] == [("fwd", "wrong-node")]
    # ENTRY bills it within the cap, first: the lessee signed nothing for ENTRY's results (it got
    # none), so nothing is paid (#14 review: a node that was offered a call, or hedged, billed it).
    sly = kit.rebill(ran, node=ENTRY, price_micro=300)
    result = await _send(a, ENTRY, sly, signed=0)
    assert result.paid == () and result.unsigned == ("fwd",)
    # ENTRY did run another call of the lessee's, worth 300, and the lessee signed for it: ENTRY
    # spends that on the call it passed on, first, and its own receipt now finds no room...
    own = kit.paid_receipt("own", node=ENTRY, price_micro=300, **common)
    assert (await _send(a, ENTRY, sly, own, signed=300)).paid == ("fwd",)
    assert await _earned(a, ENTRY.key_id) == 300
    # ...until the executor's receipt, carrying ENTRY's signed delegation, moves the payment to it
    # at its own price (120) within its own channel, the rest back to the lessee; ENTRY's channel
    # gets its room back, and its own call is paid when it resends it.
    alice = (await a.call("GET", "/v1/ledger/balance", Balances, as_user="alice")).accounts[0]
    result = await _send(a, EXECUTOR, ran, signed=120)
    assert result.paid == ("fwd",) and result.duplicate == ()
    assert await _earned(a, ENTRY.key_id) == 0
    assert await _earned(a, EXECUTOR.key_id) == 120
    refunded = (await a.call("GET", "/v1/ledger/balance", Balances, as_user="alice")).accounts[0]
    assert refunded.balance_micro == alice.balance_micro + 180
    assert (await _send(a, ENTRY, own, signed=300)).paid == ("own",)
    assert await _earned(a, ENTRY.key_id) == 300
    # Replays change nothing.
    again = await _send(a, EXECUTOR, ran, signed=120)
    assert again.paid == () and again.duplicate == ("fwd",)
    assert (await _send(a, ENTRY, sly, signed=300)).duplicate == ("fwd",)
    assert await _earned(a, EXECUTOR.key_id) == 120
    # A delegation ENTRY never signed (forged by the executor) proves nothing.
    forged = kit.paid_receipt(
        "fwd2",
        node=EXECUTOR,
        payee=ENTRY,
        price_micro=50,
        delegations=[tickets.delegate("fwd2", EXECUTOR.key_id, STRANGER)],
        **common,
    )
    result = await _send(a, EXECUTOR, forged, signed=170)
    assert [(r.invocation_id, r.reason) for r in result.refused] == [("fwd2", "wrong-node")]
    assert await audit(db) == []


async def test_earnings_mature_before_they_can_be_paid_out(
    anchor: Anchor, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hole 9: what a node earned could be paid out at once, before a lie about it could be proven."""
    a = anchor
    a.api.payouts.mature_after_s = 3 * 86400.0
    voucher = await _voucher(a)
    await a.accounts.bind_key(a.user_ids["bob"], EXECUTOR.public.raw, kind="node", label="", now=T0)
    receipt = kit.paid_receipt(
        "earned",
        node=EXECUTOR,
        lessee=LESSEE,
        voucher_id=voucher.voucher_id,
        price_micro=400,
        issued_at=T0 + 1,
    )
    assert (await _send(a, EXECUTOR, receipt)).paid == ("earned",)
    request = PayoutRequest("p1", 0, 100, "iban")
    with pytest.raises(Refused) as refused:
        await a.call("POST", "/v1/payouts", PayoutInfo, request, as_user="bob")
    assert refused.value.status == 409 and "matured" in str(refused.value)
    later = wall_time() + 3 * 86400.0 + 60
    monkeypatch.setattr(payouts_api, "wall_time", lambda: later)
    payout = await a.call("POST", "/v1/payouts", PayoutInfo, request, as_user="bob")
    assert payout.state == "pending" and payout.amount_micro == 100
    assert await audit(db) == []


async def test_a_payment_moves_along_a_chain_of_billing_forwarders_once_each(
    anchor: Anchor, db: Database
) -> None:
    """Found in review: ENTRY -> B -> EXECUTOR, with ENTRY and B both billing first: the second move
    of the same payment reused the first move's unique reference and failed the executor's whole
    batch (400), which its node then resent forever. And with the forwarder's account no longer
    cached, the move opened a transaction inside its own (SQLite: a hang holding the write lock)."""
    a = anchor
    voucher = await _voucher(a)
    common: dict[str, Any] = {"lessee": LESSEE, "voucher_id": voucher.voucher_id, "issued_at": T0 + 1}
    middle = keys("middle")
    first, second = (
        tickets.delegate("hop2", middle.key_id, ENTRY),
        tickets.delegate("hop2", EXECUTOR.key_id, middle),
    )
    ran = kit.paid_receipt(
        "hop2", node=EXECUTOR, payee=ENTRY, price_micro=100, cap_micro=300,
        delegations=[first, second], **common,
    )  # fmt: skip
    # ENTRY and B each have room on their channels (the lessee signed 300 for other results of
    # theirs) and spend it on this call first.
    assert (await _send(a, ENTRY, kit.rebill(ran, node=ENTRY, price_micro=300))).paid == ("hop2",)
    b_bill = signing.sign(dataclasses.replace(ran, delegations=(first,), price_micro=300), middle)
    assert (await _send(a, middle, b_bill)).paid == ("hop2",)  # moved from ENTRY to B
    a.api.settler.accounts.forget()  # what UNCLAIMED_RECHECK_S, or an anchor restart, does
    other = kit.paid_receipt("other", node=EXECUTOR, price_micro=50, **common)
    async with asyncio.timeout(60):  # a hang guard, not a speed bound
        result = await _send(a, EXECUTOR, ran, other)
    assert sorted(result.paid) == ["hop2", "other"]
    assert await _earned(a, EXECUTOR.key_id) == 150
    assert await _earned(a, ENTRY.key_id) == 0 and await _earned(a, middle.key_id) == 0
    assert await audit(db) == []


async def test_a_node_that_was_offered_a_call_or_hedged_is_paid_nothing_for_it(
    anchor: Anchor, db: Database
) -> None:
    """#14 (review of the fixes): the payment followed the ticket and delegation chain, which every
    node a call was *offered* to holds. A forward target that refused (503) held ENTRY's signed
    delegation and billed the call; an entry node that stayed silent, and was hedged, held the
    lessee's genuine ticket and billed it first, and the node that ran the call lost its payment
    as a duplicate. Now the lessee signs only for the results it received, per node."""
    a = anchor
    voucher = await _voucher(a)
    common: dict[str, Any] = {"lessee": LESSEE, "voucher_id": voucher.voucher_id, "issued_at": T0 + 1}
    refuser, silent = keys("refuser"), keys("silent")
    # ENTRY offered "offered" to `refuser` (which answered 503), then forwarded it to EXECUTOR.
    offer, hop = (tickets.delegate("offered", n.key_id, ENTRY) for n in (refuser, EXECUTOR))
    ran = kit.paid_receipt(
        "offered", node=EXECUTOR, payee=ENTRY, price_micro=100, cap_micro=300, delegations=[hop], **common
    )
    billed = signing.sign(dataclasses.replace(ran, delegations=(offer,), price_micro=300), refuser)
    result = await _send(a, refuser, billed, signed=0)
    assert result.paid == () and result.unsigned == ("offered",)
    # The lessee sent "hedged" to `silent`, heard nothing, and sent it to EXECUTOR too, which ran it.
    hedged = kit.paid_receipt("hedged", node=EXECUTOR, price_micro=80, cap_micro=300, **common)
    first = kit.rebill(
        kit.paid_receipt("hedged", node=silent, price_micro=300, cap_micro=300, **common), node=silent
    )
    result = await _send(a, silent, first, signed=0)
    assert result.paid == () and result.unsigned == ("hedged",)
    # The executor, for which the lessee signed both results, is paid both.
    result = await _send(a, EXECUTOR, ran, hedged, signed=180)
    assert sorted(result.paid) == ["hedged", "offered"]
    assert await _earned(a, EXECUTOR.key_id) == 180
    assert await _earned(a, refuser.key_id) == 0 and await _earned(a, silent.key_id) == 0
    # An older or replayed ticket changes nothing, and no ticket lets a node take more than signed.
    assert (await _send(a, refuser, billed, signed=0)).duplicate == ("offered",)  # paid, to the executor
    extra = kit.paid_receipt("extra", node=EXECUTOR, price_micro=50, **common)
    assert (await _send(a, EXECUTOR, extra, signed=100)).unsigned == ("extra",)
    assert (await _send(a, EXECUTOR, extra, signed=230)).paid == ("extra",)
    assert await audit(db) == []
