"""The node's side of payment channels: the tickets it keeps, and the lessee it stops serving."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from p2pfaas import signing
from p2pfaas.channels import CREDIT_CALLS, sign_channel
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.policy import FeePolicy
from p2pfaas.messages import ChannelTicket, ChannelTickets, Voucher
from p2pfaas.node.payments.book import VOUCHERS_PER_LESSEE
from p2pfaas.node.payments.channel_store import ChannelStore
from p2pfaas.node.payments.node_payments import NodePayments
from p2pfaas.node.payments.receipts import MAX_UNSIGNED_TRIES, ReceiptQueue
from p2pfaas.node.payments.spends import PaymentRequired
from p2pfaas.pricing import Prices
from p2pfaas.rpc import Forbidden
from tests.node.payments.conftest import keys
from tests.node.payments.test_book import (
    ANCHOR,
    LESSEE,
    NODE,
    T0,
    book,
    header,
    receipt,
    request,
    voucher,
)

MALLORY = keys("mallory")


def ticket(
    total: int, *, seq: int = 1, by: KeyPair = LESSEE, node_id: str = NODE.key_id, voucher_id: str = "v1"
) -> ChannelTicket:
    return sign_channel(voucher_id, node_id, seq=seq, total_micro=total, keys=by)


def test_only_the_vouchers_lessee_can_change_the_ticket_a_node_holds(tmp_path: Path) -> None:
    store = ChannelStore(tmp_path, node_id=NODE.key_id)
    v = voucher(10**6)
    key = ANCHOR.public.raw
    assert store.offer(ticket(100), v, anchor_key=key, served=True)
    assert not store.offer(ticket(90, seq=9), v, anchor_key=key, served=True)  # lower: changes nothing
    assert not store.offer(ticket(100), v, anchor_key=key, served=True)  # a replay: nothing
    for forged, why in [
        (ticket(10**9, by=MALLORY), "another key"),  # someone else raises (or lowers) what is held
        (ticket(500, node_id=keys("other").key_id), "is for node"),  # another node's channel
        (dataclasses.replace(ticket(500), total_micro=10**9), "does not verify"),
    ]:
        with pytest.raises(Forbidden, match=why):
            store.offer(forged, v, anchor_key=key, served=True)
    with pytest.raises(Forbidden, match="anchor"):  # a voucher the anchor never signed
        store.offer(ticket(500), voucher(10**6, anchor=MALLORY), anchor_key=key, served=True)
    with pytest.raises(Forbidden, match="another voucher"):
        store.offer(ticket(500, voucher_id="v2"), v, anchor_key=key, served=True)
    assert not store.offer(ticket(700, voucher_id="v1"), v, anchor_key=key, served=False)  # nothing owed here
    # Another worker process of the node sees the same ticket (files, not memory).
    sibling = ChannelStore(tmp_path, node_id=NODE.key_id)
    assert sibling.signed_micro("v1") == 100
    assert store.offer(ticket(250, seq=3), v, anchor_key=key, served=True)
    assert [t.total_micro for t in ChannelStore(tmp_path, node_id=NODE.key_id).tickets(["v1", "v9"])] == [250]


def test_a_lessee_that_stops_signing_is_refused_after_its_credit(tmp_path: Path) -> None:
    """#14 (review): a hostile lessee names its own sybil as the payee, or just never pays the node
    that ran its calls. The node runs at most CREDIT_CALLS worst-case calls' worth for it."""
    signed = {"v1": 0}
    b = book(signed_micro=lambda voucher_id: signed[voucher_id])
    v = voucher(10**9)
    worst = 1_000
    n = 0

    def run_one() -> None:
        nonlocal n
        b.authorize(request(f"i{n}", v), header(), LESSEE.public.raw, max_price_micro=worst, now=T0)
        b.charged(receipt(f"i{n}", worst))
        n += 1

    with pytest.raises(PaymentRequired, match="behind") as refused:
        for _ in range(10 * CREDIT_CALLS):
            run_one()
    assert refused.value.status == 402
    assert CREDIT_CALLS <= n <= CREDIT_CALLS + 1  # it ran its credit's worth, and then stopped
    signed["v1"] = n * worst  # the lessee signs for what it received: served again
    run_one()


def test_unsigned_receipts_wait_for_a_ticket_then_go_again_and_are_given_up_in_the_end() -> None:
    queue = ReceiptQueue(random.Random(1), linger_s=0.0)
    queue.add(receipt("a", 10), 0.0)
    assert queue.next_batch(0.0) is not None
    assert queue.unsigned(["a"], 0.0) == []
    queue.acknowledged([], 0.0)
    assert not queue.pending and "a" in queue.waiting
    assert queue.next_batch(0.1) is None  # not before its pause
    queue.covered(["v1"], 0.2)  # a newer ticket of its voucher arrived: it goes at once
    assert [r.invocation_id for r in queue.next_batch(0.2) or []] == ["a"]
    now = 0.2
    for _ in range(MAX_UNSIGNED_TRIES - 2):
        assert queue.unsigned(["a"], now) == []
        queue.acknowledged([], now)
        now = queue.send_at() or now
        assert queue.next_batch(now) is not None
    given_up = queue.unsigned(["a"], now)
    assert [r.invocation_id for r in given_up] == ["a"] and not queue.waiting and not queue.pending


async def test_a_nodes_payments_take_tickets_and_resend_what_they_cover(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        payments = NodePayments(
            anchor_url="http://127.0.0.1:1", keys=NODE, session=session, work_dir=tmp_path,
            prices=Prices(), cpus_per_instance=1.0, rng=random.Random(1),
        )  # fmt: skip
        v: Voucher = voucher(10**6)
        with pytest.raises(PaymentRequired):  # the anchor's key is not known yet
            payments.offer_channels(ChannelTickets((ticket(5),), (v,)))
        payments.book = book(spends=payments.spends, signed_micro=payments.channels.signed_micro)
        assert payments.offer_channels(ChannelTickets((ticket(5),), (v,))) == 0  # voucher not served here
        payments.book.authorize(request("i0", v), header(), LESSEE.public.raw, max_price_micro=10, now=T0)
        payments.sender.queue.add(receipt("i0", 5), 0.0)
        payments.sender.queue.unsigned(["i0"], 0.0)
        assert payments.offer_channels(ChannelTickets((ticket(5),), (v,))) == 1
        assert "i0" in payments.sender.queue.pending  # covered: it goes again
        with pytest.raises(Forbidden, match="came without it"):
            payments.offer_channels(ChannelTickets((ticket(6),), ()))
        assert signing.verify(payments.channels.tickets(["v1"])[0]).raw == LESSEE.public.raw


def test_a_fresh_voucher_gives_a_lessee_that_does_not_sign_no_fresh_credit() -> None:
    """#18: the credit was per voucher, so a lessee churning vouchers got CREDIT_CALLS free calls
    from each node per voucher. It is one credit per lessee key, across its vouchers."""
    signed: dict[str, int] = {}
    b = book(signed_micro=lambda voucher_id: signed.get(voucher_id, 0))
    worst, ran = 1_000, 0

    def fresh(n: int, lessee: KeyPair = LESSEE) -> Voucher:
        unsigned = Voucher(f"v{n}", lessee.public.raw, 10**9, T0 + 600, signer=b"", signature=b"")
        return signing.sign(unsigned, ANCHOR)

    def run_one(v: Voucher, invocation_id: str) -> None:
        b.authorize(request(invocation_id, v), header(), LESSEE.public.raw, max_price_micro=worst, now=T0)
        b.charged(dataclasses.replace(receipt(invocation_id, worst), voucher_id=v.voucher_id))

    for n in range(10):
        with pytest.raises(PaymentRequired, match="behind"):
            for k in range(10 * CREDIT_CALLS):
                run_one(fresh(n), f"v{n}-{k}")
                ran += 1
    assert CREDIT_CALLS <= ran <= CREDIT_CALLS + 1  # one credit's worth in all, not one per voucher
    signed.update({f"v{n}": worst * 10 for n in range(10)})  # it signs for what it received
    run_one(fresh(10), "v10-0")


def test_many_refused_or_settled_vouchers_do_not_wipe_a_lessees_debt() -> None:
    """Review of #18: the lessee's set of vouchers took each voucher before its reservation and
    dropped the oldest past VOUCHERS_PER_LESSEE, so 256 refused requests on fresh vouchers pushed
    the one in debt out of the set, and with it the debt."""
    signed: dict[str, int] = {}
    b = book(signed_micro=lambda voucher_id: signed.get(voucher_id, 0))
    worst = 1_000

    def fresh(name: str, budget: int = 10**9) -> Voucher:
        unsigned = Voucher(name, LESSEE.public.raw, budget, T0 + 600, signer=b"", signature=b"")
        return signing.sign(unsigned, ANCHOR)

    def run_one(v: Voucher, invocation_id: str) -> None:
        b.authorize(request(invocation_id, v), header(), LESSEE.public.raw, max_price_micro=worst, now=T0)
        b.charged(dataclasses.replace(receipt(invocation_id, worst), voucher_id=v.voucher_id))

    debtor = fresh("debt")
    with pytest.raises(PaymentRequired, match="behind"):
        for k in range(10 * CREDIT_CALLS):
            run_one(debtor, f"debt-{k}")
    for n in range(VOUCHERS_PER_LESSEE + 44):  # refused: behind, and too small to hold a call anyway
        with pytest.raises(PaymentRequired):
            run_one(fresh(f"tiny{n}", budget=1), f"tiny-{n}")
    with pytest.raises(PaymentRequired, match="behind"):
        run_one(fresh("new"), "new-0")

    # Settled-up vouchers make room: a lessee that signs keeps working over any number of them.
    signed["debt"] = 10**9
    for n in range(VOUCHERS_PER_LESSEE + 10):
        name = f"paid{n}"
        run_one(fresh(name), f"{name}-0")
        signed[name] = 10**9


def _paying_book(fee_ppm: int = 50_000) -> tuple[Any, dict[str, int]]:
    signed: dict[str, int] = {}
    b = book(signed_micro=lambda voucher_id: signed.get(voucher_id, 0))
    b.fees = FeePolicy(fee_ppm=fee_ppm)
    return b, signed


def _fresh(name: str, budget: int = 10**9) -> Voucher:
    unsigned = Voucher(name, LESSEE.public.raw, budget, T0 + 600, signer=b"", signature=b"")
    return signing.sign(unsigned, ANCHOR)


def _run(b: Any, v: Voucher, invocation_id: str, *, price: int, worst: int = 1_000) -> None:
    b.authorize(request(invocation_id, v), header(), LESSEE.public.raw, max_price_micro=worst, now=T0)
    b.charged(dataclasses.replace(receipt(invocation_id, price), voucher_id=v.voucher_id))


def test_an_honest_lessee_signing_exact_prices_is_never_refused_for_fee_rounding() -> None:
    """Review: the node compared its per-call fee-rounded charges with the fee on the signed sum,
    so each call left up to 1 micro of debt no signature could clear: an honest lessee was refused
    after a few thousand 1-micro calls, and at its 257th voucher on a node."""
    b, signed = _paying_book()
    v = _fresh("v-many")
    for k in range(6_000):
        _run(b, v, f"c{k}", price=1)
        signed["v-many"] = signed.get("v-many", 0) + 1  # it signs exactly each result's price
    for n in range(VOUCHERS_PER_LESSEE + 20):
        name = f"w{n}"
        _run(b, _fresh(name), f"{name}-a", price=3)
        _run(b, _fresh(name), f"{name}-b", price=3)
        signed[name] = 6


def test_a_surplus_signed_on_one_voucher_pays_for_no_other() -> None:
    """Review: debts were summed over the lessee's vouchers, so signing 10^12 on one small voucher
    (which the anchor can pay only up to its hold) cancelled every other voucher's debt."""
    b, signed = _paying_book()
    _run(b, _fresh("small", budget=2_000), "s0", price=10)
    signed["small"] = 10**12
    big = _fresh("big")
    with pytest.raises(PaymentRequired, match="behind"):
        for k in range(200):
            _run(b, big, f"b{k}", price=1_000)
    assert k <= CREDIT_CALLS + 1


def test_a_voucher_with_a_call_in_flight_stays_counted() -> None:
    """Review: a voucher whose charges were all signed but with a call still running counted as
    settled up and could leave the lessee's count; the call's charge then came unseen."""
    b, signed = _paying_book()
    slow = _fresh("slow")
    _run(b, slow, "fast-0", price=5)
    signed["slow"] = 5
    b.authorize(request("long", slow), header(), LESSEE.public.raw, max_price_micro=1_000, now=T0)
    assert not b._settled_up("slow")
    b.charged(dataclasses.replace(receipt("long", 5), voucher_id="slow"))
    assert not b._settled_up("slow")  # charged, not signed yet
    signed["slow"] = 10
    assert b._settled_up("slow")
